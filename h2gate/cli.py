"""The ``h2gate`` command, generated from the options table in :mod:`h2gate.config`.

Only flags the user actually typed reach :func:`load_config` (click's parameter
source tells them apart from defaults), so the config file and environment are
not overridden by click's defaults.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from h2gate import __version__
from h2gate.config import ENV_PREFIX, default_repr, describe_type, field_type, fields, load_config
from h2gate.errors import StartupError


def _click_option(f: Any) -> Any:
    meta = f.metadata
    base, _optional, choices = describe_type(field_type(f))
    long = "--" + f.name.replace("_", "-")
    flags = list(meta["flags"]) or [long]
    env = ENV_PREFIX + f.name.upper()
    help_text = f"{meta['help']}  [default: {default_repr(f)}; env: {env}]"
    kwargs: dict[str, Any] = {"help": help_text, "default": None}
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
    """Bad or unknown flags are reported like every other startup error: one ``h2gate: error:`` line."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise _OneLineUsageError(exc.format_message()) from None


def _build() -> click.Command:
    @click.command(cls=_Command, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
    @click.argument("app", required=False)
    @click.version_option(__version__, "--version", prog_name="h2gate", message="%(prog)s %(version)s")
    @click.pass_context
    def main(ctx: click.Context, app: str | None, **params: Any) -> None:
        """Serve the ASGI application APP (MODULE:ATTRIBUTE) over HTTP/2.

        Without --certfile/--keyfile (or --self-signed) the server speaks cleartext
        HTTP/2 (h2c: prior knowledge or HTTP/1.1 Upgrade); browsers only speak HTTP/2 over TLS.
        APP may also come from H2GATE_APP or the config file's `app` key.
        """
        given = {
            name: value
            for name, value in params.items()
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        }
        if app is not None:
            given["app"] = app
        for name, value in given.items():
            if isinstance(value, tuple):  # repeatable options (--bind, --cert)
                given[name] = list(value)
        try:
            config = load_config(given)
            if not config.app:
                raise StartupError("no application given: h2gate MODULE:ATTRIBUTE (e.g. h2gate examples.hello:app)")
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
