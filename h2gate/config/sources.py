"""Where option values come from, in order, later winning: defaults, the config file, the environment, flags.

Validation happens while reading; a bad value raises
:class:`~h2gate.errors.ConfigError` naming where it came from.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from h2gate.config.options import ENV_PREFIX, Config
from h2gate.config.values import TrustedPeers, format_tokens
from h2gate.errors import ConfigError


def fields() -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(Config)


def field_type(f: dataclasses.Field[Any]) -> Any:
    return typing.get_type_hints(Config)[f.name]


def describe_type(tp: Any) -> tuple[type, bool, tuple[str, ...] | None]:
    """Return (base type, optional?, choices) for a field annotation."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = True
        tp = args[0]
        origin = typing.get_origin(tp)
    if origin is Literal:
        return str, optional, tuple(typing.get_args(tp))
    if origin is list:
        return list, optional, None
    return tp, optional, None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(f: dataclasses.Field[Any], value: Any, source: str, *, from_text: bool) -> Any:
    """Check (and for env text, convert) one value; raise ConfigError naming ``source``."""
    base, optional, choices = describe_type(field_type(f))
    if value is None and optional:
        return None
    try:
        if from_text:
            value = _from_text(base, value)
        value = _check_type(base, value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if isinstance(value, float) and math.isnan(value):  # compares false with any bound
        raise ConfigError(f"{source}: expected a number, got nan")
    if choices is not None and from_text and isinstance(value, str):
        value = value.lower()
    if choices is not None and value not in choices:
        raise ConfigError(f"{source}: must be one of {', '.join(choices)}, got {value!r}")
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if lo is not None and value < lo:
        raise ConfigError(f"{source}: must be at least {lo}, got {value}")
    if hi is not None and value > hi:
        raise ConfigError(f"{source}: must be at most {hi}, got {value}")
    return value


def _from_text(base: type, text: str) -> Any:
    text = text.strip()
    if base is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"expected a boolean (true/false), got {text!r}")
    if base is list:
        return [part.strip() for part in text.split(",") if part.strip()]
    if base is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if base is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    return text


def _check_type(base: type, value: Any) -> Any:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list of strings"}
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is list and isinstance(value, str):
        return [value]
    ok = isinstance(value, base) and not (base is int and isinstance(value, bool))
    if base is list and ok:
        ok = all(isinstance(v, str) for v in value)
    if not ok:
        raise TypeError(f"expected {names.get(base, base.__name__)}, got {type(value).__name__} {value!r}")
    return value


def read_toml(path: str) -> dict[str, Any]:
    """Read and validate a config file; unknown keys and wrong types are errors naming file and key."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    known = {f.name: f for f in fields() if f.name != "config"}
    out: dict[str, Any] = {}
    for key, value in data.items():
        f = known.get(key) or known.get(key.replace("-", "_"))
        if f is None:
            raise ConfigError(f"config file {path}: unknown key {key!r}")
        out[f.name] = _coerce(f, value, f"config file {path}: key {key!r}", from_text=False)
    return out


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields():
        name = ENV_PREFIX + f.name.upper()
        if name in environ:
            out[f.name] = _coerce(f, environ[name], f"environment variable {name}", from_text=True)
    return out


def load_config(
    cli_values: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the Config: defaults < config file < environment < ``cli_values``.

    ``cli_values`` holds only options the user gave explicitly. Raises ConfigError.
    """
    return resolve_config(cli_values, environ)[0]


def resolve_config(
    cli_values: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Config, dict[str, str]]:
    """:func:`load_config`, plus where each value came from (for ``--print-config``).

    The origins map every option name to ``"default"``, ``"config file PATH"``, ``"environment H2GATE_X"``
    or ``"command line"``. Raises ConfigError.
    """
    cli_values = dict(cli_values or {})
    env = read_env(os.environ if environ is None else environ)
    known = {f.name: f for f in fields()}
    for key, value in cli_values.items():
        cli_values[key] = _coerce(known[key], value, "--" + key.replace("_", "-"), from_text=False)
    config_path = cli_values.get("config") or env.get("config")
    values: dict[str, Any] = {}
    origins = dict.fromkeys(known, "default")
    if config_path:
        from_file = read_toml(config_path)
        values.update(from_file)
        origins.update(dict.fromkeys(from_file, f"config file {config_path}"))
    values.update(env)
    origins.update({name: f"environment {ENV_PREFIX}{name.upper()}" for name in env})
    values.update(cli_values)
    origins.update(dict.fromkeys(cli_values, "command line"))
    if config_path:
        values["config"] = config_path
    config = Config(**values)
    _cross_check(config)
    return config, origins


def _cross_check(config: Config) -> None:
    format_tokens(config.access_log_format)  # unknown atoms are startup errors naming them
    TrustedPeers(config.forwarded_allow_ips)
    if config.keyfile and not config.certfile:
        raise ConfigError("--keyfile needs --certfile")
    if config.self_signed and config.certfile:
        raise ConfigError("--self-signed and --certfile are mutually exclusive")
    for name in ("cert", "ocsp_response"):
        if getattr(config, name) and not config.certfile:
            raise ConfigError(f"--{name.replace('_', '-')} needs --certfile")
    if config.verify_client != "none" and not config.ca_certs:
        raise ConfigError(f"--verify-client {config.verify_client} needs --ca-certs")
    if config.verify_client != "none" and not config.use_tls:
        raise ConfigError("--verify-client needs TLS (--certfile)")
    if not config.bind:
        raise ConfigError("at least one --bind address is needed")
    if config.reload and config.workers > 1:
        raise ConfigError("--reload runs one worker: leave out --workers")


def default_repr(f: dataclasses.Field[Any]) -> str:
    """The default as shown in --help, the options reference and conf/h2gate.toml."""
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(value)
    return str(value) if value != "" else '""'
