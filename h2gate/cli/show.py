"""What the command prints besides serving: ``--help`` in sections and ``--print-config``."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from h2gate.config import ENV_PREFIX, SECTIONS, Config, default_repr, fields

#: Options whose value --print-config does not show.
SECRET = {"keyfile_password"}


def help_suffix(f: dataclasses.Field[Any]) -> str:
    """``[default: 100; env: H2GATE_X]``; an empty default (none, "", []) is left out rather than shown blank."""
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
    env = f"env: {ENV_PREFIX}{f.name.upper()}"
    if default is None or default == "" or default == []:
        return f"[{env}]"
    return f"[default: {default_repr(f)}; {env}]"


def section_of(name: str | None) -> str:
    """The --help section of a parameter (options of the table by their ``section``; the rest under App)."""
    for f in fields():
        if f.name == name:
            return str(f.metadata.get("section") or "App")
    return "App"


def format_sections(command: click.Command, ctx: click.Context, formatter: click.HelpFormatter) -> None:
    """The options under the section headings of the table, in table order; the command's own flags end App."""
    rows: dict[str, list[tuple[str, str]]] = {section: [] for section in SECTIONS}
    table = {f.name for f in fields()}
    extras = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or isinstance(param, click.Argument):
            continue
        if param.name in table:
            rows.setdefault(section_of(param.name), []).append(record)
        else:
            extras.append(record)
    rows["App"] += extras
    for section, records in rows.items():
        if records:
            with formatter.section(section):
                formatter.write_dl(records)


def toml_value(value: Any) -> str:
    """A Python value written as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def config_toml(config: Config, origins: dict[str, str]) -> str:
    """The resolved configuration as a TOML file that ``--config`` reads back, each value's origin beside it.

    Unset options (TOML has no null) and secrets are written as comments.
    """
    lines = [
        "# h2gate configuration, as resolved from defaults < config file < environment < command line.",
        "# Each line says where its value came from. Use it with: h2gate --config FILE",
    ]
    by_section: dict[str, list[dataclasses.Field[Any]]] = {}
    for f in fields():
        if f.name != "config":
            by_section.setdefault(str(f.metadata.get("section") or "App"), []).append(f)
    for section in [*SECTIONS, *(s for s in by_section if s not in SECTIONS)]:
        if section not in by_section:
            continue
        lines += ["", f"# --- {section} ---"]
        for f in by_section[section]:
            value = getattr(config, f.name)
            origin = origins.get(f.name, "default")
            if value is None:
                lines.append(f"# {f.name} = (not set)  # {origin}")
            elif f.name in SECRET:
                lines.append(f"# {f.name} = (set, not shown)  # {origin}")
            else:
                lines.append(f"{f.name} = {toml_value(value)}  # {origin}")
    return "\n".join(lines) + "\n"
