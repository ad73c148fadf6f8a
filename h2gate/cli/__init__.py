"""The ``h2gate`` command, generated from the options table in :mod:`h2gate.config`.

Only flags the user actually typed reach :func:`load_config` (click's parameter
source tells them apart from defaults), so the config file and environment are
not overridden by click's defaults.

Exit status: 0 when served and stopped cleanly (or a ``--check-config`` that passed), 2 for a usage error
(an unknown flag, a bad value on the command line, in the environment or in the config file), 1 when the
server cannot start (the app does not import, a certificate is missing, a port is taken) or failed.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from h2gate import __version__, build
from h2gate.cli import show, spelling
from h2gate.config import describe_type, field_type, fields, resolve_config
from h2gate.errors import ConfigError, StartupError

DEMO_APP = "h2gate.examples.hello:app"


def _click_option(f: Any) -> Any:
    meta = f.metadata
    base, _optional, choices = describe_type(field_type(f))
    long = "--" + f.name.replace("_", "-")
    flags = spelling.own_flags(f)
    kwargs: dict[str, Any] = {"help": f"{meta['help']}  {show.help_suffix(f)}", "default": None}
    if base is bool:
        return click.option(f"{long}/--no-{long[2:]}", f.name, **kwargs)
    if base is list:
        kwargs["multiple"] = True
        kwargs["default"] = ()
    elif choices:
        kwargs["type"] = click.Choice(choices, case_sensitive=False)
        if meta.get("flag_value"):  # the flag alone means this value; --flag=VALUE picks another
            kwargs.update(is_flag=False, flag_value=meta["flag_value"])
    elif base is int:
        kwargs["type"] = click.INT
    elif base is float:
        kwargs["type"] = click.FLOAT
    if meta["metavar"]:
        kwargs["metavar"] = meta["metavar"]
    return click.option(*flags, f.name, **kwargs)


class _OneLineUsageError(click.UsageError):
    def show(self, file: Any = None) -> None:
        message = " ".join(self.format_message().split())
        click.echo(f"h2gate: error: {message} (see h2gate --help)", err=True)


class _Command(click.Command):
    """Bad or unknown flags are one ``h2gate: error:`` line (exit 2); other servers' spellings are understood."""

    def make_context(self, info_name: str | None, args: list[str], *rest: Any, **kwargs: Any) -> click.Context:
        takes_value = {opt for p in self.params if isinstance(p, click.Option) and not p.is_flag for opt in p.opts}
        args = spelling.rewrite(list(args), takes_value)
        try:
            return super().make_context(info_name, args, *rest, **kwargs)
        except click.NoSuchOption as exc:
            known = [opt for p in self.params for opt in [*p.opts, *p.secondary_opts] if opt.startswith("-")]
            raise _OneLineUsageError(spelling.unknown_option_message(exc.option_name, known)) from None
        except click.UsageError as exc:
            raise _OneLineUsageError(exc.format_message()) from None

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        show.format_sections(self, ctx, formatter)


def _usage_error(message: str) -> None:
    click.echo(f"h2gate: error: {message}", err=True)
    sys.exit(2)


def _version_message() -> str:
    """``h2gate 0.1.0 (compiled with mypyc)`` or ``(pure Python)``: which build answers (h2gate.build)."""
    return f"%(prog)s %(version)s ({build()})"


def _build() -> click.Command:
    @click.command(cls=_Command, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
    @click.argument("app", required=False)
    @click.option("--host", hidden=True)
    @click.option("--port", type=click.IntRange(0, 65535), hidden=True)
    @click.option("--uds", hidden=True)
    @click.option("--fd", type=click.IntRange(0), hidden=True)
    @click.option("--demo", is_flag=True, help=f"Serve the bundled example app ({DEMO_APP}).")
    @click.option(
        "--check-config",
        is_flag=True,
        help="Check the configuration, the certificates and that the app imports, then exit (0: all good).",
    )
    @click.option(
        "--print-config",
        is_flag=True,
        help="Print the resolved configuration as TOML, with where each value came from, then exit.",
    )
    @click.version_option(__version__, "--version", prog_name="h2gate", message=_version_message())
    @click.pass_context
    def main(
        ctx: click.Context,
        app: str | None,
        host: str | None,
        port: int | None,
        uds: str | None,
        fd: int | None,
        demo: bool,
        check_config: bool,
        print_config: bool,
        **params: Any,
    ) -> None:
        """Serve APP, an ASGI or WSGI application (MODULE:ATTRIBUTE), over HTTP/2.

        Without --certfile/--keyfile (or --self-signed) the server speaks cleartext
        HTTP/2 (h2c: prior knowledge or HTTP/1.1 Upgrade); browsers only speak HTTP/2 over TLS.
        APP may also come from H2GATE_APP or the config file's `app` key. Every option can also be
        set as an H2GATE_* variable or as a key in a --config file.
        """
        given = {
            name: value
            for name, value in params.items()
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        }
        if demo:
            if app is not None:
                _usage_error(f"--demo serves {DEMO_APP}: leave out {app}")
            app = DEMO_APP
        if app is not None:
            given["app"] = app
        for name, value in given.items():
            if isinstance(value, tuple):  # repeatable options (--bind, --cert)
                given[name] = list(value)
        parts = spelling.bind_from_parts(host, port, uds, fd)
        if parts:
            if "bind" in given:
                _usage_error("--host/--port/--uds/--fd and --bind say the same thing: use --bind only")
            given["bind"] = parts
        try:
            config, origins = resolve_config(given)
            from h2gate.net.binds import parse_bind

            for text in config.bind:
                parse_bind(text)
        except ConfigError as exc:
            _usage_error(str(exc))
        if print_config:
            click.echo(show.config_toml(config, origins), nl=False)
            sys.exit(0)
        if not config.app:
            _usage_error(f"no application given: h2gate MODULE:ATTRIBUTE (e.g. h2gate {DEMO_APP})")
        try:
            if check_config:
                from h2gate.ops.run import check

                for line in check(config):
                    click.echo(f"h2gate: {line}")
                click.echo("h2gate: configuration OK")
                sys.exit(0)
            from h2gate.ops.run import run

            code = run(config, given)
        except StartupError as exc:
            click.echo(f"h2gate: error: {exc}", err=True)
            sys.exit(1)
        sys.exit(code)

    for f in fields():
        if f.metadata["cli"]:
            main = _click_option(f)(main)
    return main


main = _build()
