"""Other servers' spellings of our options: aliases, and a "did you mean" for the rest.

The options table records how Uvicorn, Gunicorn, Hypercorn, Granian and h2corn spell each option
(``peers=``). A spelling that means the same and is not one of ours is rewritten to ours before click
parses the command line; a similar one (``~--flag``) and flags with no equivalent
(:data:`~h2gate.config.NO_EQUIVALENT`) get a usage error that names the h2gate option.
``--host``, ``--port``, ``--uds`` and ``--fd`` are real (hidden) options of the command: they become
one ``--bind``.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator
from typing import Any

from h2gate.config import NO_EQUIVALENT, PEER_SERVERS, describe_type, field_type, fields

#: Peer spellings that are hidden options of the command, combined into --bind.
BIND_PARTS = ("--host", "--port", "--uds", "--fd")


def own_flags(f: dataclasses.Field[Any]) -> list[str]:
    """The option's own spellings (``--no-`` forms of booleans excluded)."""
    return list(f.metadata["flags"]) or ["--" + f.name.replace("_", "-")]


def canonical(f: dataclasses.Field[Any]) -> str:
    """The long flag we name in messages: ``--bind`` for ``-b, --bind``."""
    return [flag for flag in own_flags(f) if flag.startswith("--")][-1]


def peer_spellings(f: dataclasses.Field[Any]) -> Iterator[tuple[str, str, bool]]:
    """(server, spelling, same meaning?) for each spelling the table records."""
    for server, text in f.metadata["peers"].items():
        for word in text.split():
            yield server, word.lstrip("~"), not word.startswith("~")


@dataclasses.dataclass(frozen=True)
class Spelling:
    ours: str  # the h2gate flag
    servers: tuple[str, ...]  # who spells it this way, display names
    same: bool  # accepted as an alias, or only similar


def spellings() -> dict[str, Spelling]:
    """Every peer flag that is not also one of ours, mapped to ours."""
    ours = {flag for f in fields() for flag in own_flags(f)}
    ours |= {"--no-" + flag[2:] for f in fields() if describe_type(field_type(f))[0] is bool for flag in own_flags(f)}
    found: dict[str, tuple[str, list[str], bool]] = {}
    for f in fields():
        if not f.metadata["cli"]:
            continue
        is_bool = describe_type(field_type(f))[0] is bool
        for server, word, same in peer_spellings(f):
            if not word.startswith("-") or word in ours or word in BIND_PARTS or word in NO_EQUIVALENT:
                continue
            pairs = [(word, canonical(f))]
            if is_bool and word.startswith("--"):
                pairs.append(("--no-" + word[2:], "--no-" + canonical(f)[2:]))
            for theirs, mine in pairs:
                _, servers, before = found.get(theirs, (mine, [], False))
                found[theirs] = (mine, [*servers, PEER_SERVERS[server]], before or same)
    return {word: Spelling(mine, tuple(servers), same) for word, (mine, servers, same) in found.items()}


def rewrite(args: list[str], takes_value: set[str]) -> list[str]:
    """``args`` with every alias replaced by our spelling (``--alias=value`` too)."""
    table = {word: s.ours for word, s in spellings().items() if s.same}
    out: list[str] = []
    value_next = False
    for i, arg in enumerate(args):
        if value_next:
            out.append(arg)
            value_next = False
            continue
        if arg == "--":
            out.extend(args[i:])
            break
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        name = table.get(name, name)
        out.append(name + eq + value)
        value_next = name in takes_value and not eq
    return out


def unknown_option_message(name: str, known: list[str]) -> str:
    """What to say about an option click does not know: the nearest h2gate option, by meaning or by spelling."""
    if name in NO_EQUIVALENT:
        return f"no such option {name}: {NO_EQUIVALENT[name]}"
    similar = spellings().get(name)
    if similar is not None:
        who = " and ".join(similar.servers)
        return f"no such option {name} ({who}): the closest h2gate option is {similar.ours}"
    base = name.partition("=")[0]
    everything = {flag: flag for flag in known} | {word: s.ours for word, s in spellings().items()}
    close = difflib.get_close_matches(base, list(everything), n=1, cutoff=0.6)
    if close:
        return f"no such option {base}: did you mean {everything[close[0]]}?"
    return f"no such option {base}"


def bind_from_parts(host: str | None, port: int | None, uds: str | None, fd: int | None) -> list[str]:
    """``--host``/``--port`` (Uvicorn, Granian, h2corn), ``--uds``, ``--fd`` as ``--bind`` addresses."""
    binds = []
    if host is not None or port is not None:
        host = host if host is not None else "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        binds.append(f"{host}:{port if port is not None else 8000}")
    if uds is not None:
        binds.append(f"unix:{uds}")
    if fd is not None:
        binds.append(f"fd://{fd}")
    return binds
