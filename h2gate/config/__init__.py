"""Configuration: the options table (:mod:`.options`), its sources (:mod:`.sources`), value types (:mod:`.values`).

A leaf of the package: everything imports it, it imports nothing of h2gate but :mod:`h2gate.errors`.
"""

from h2gate.config.options import ENV_PREFIX, NO_EQUIVALENT, PEER_SERVERS, SECTIONS, Config, option
from h2gate.config.sources import (
    default_repr,
    describe_type,
    field_type,
    fields,
    load_config,
    read_env,
    read_toml,
    resolve_config,
)

__all__ = [
    "ENV_PREFIX",
    "NO_EQUIVALENT",
    "PEER_SERVERS",
    "SECTIONS",
    "Config",
    "default_repr",
    "describe_type",
    "field_type",
    "fields",
    "load_config",
    "option",
    "read_env",
    "read_toml",
    "resolve_config",
]
