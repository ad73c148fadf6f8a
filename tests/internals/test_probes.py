"""Every private name of h2, hpack, pyOpenSSL and asyncio that h2gate relies on is still there.

When a dependency renames one, h2gate falls back to the public API (slower, or
with h2's own stricter rule) and keeps working; this test is what notices, and
it names the internal that changed.
"""

from __future__ import annotations

import pytest

from h2gate.internals.probes import CHECKS, PROBES


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_internal_is_still_there(name: str) -> None:
    what, _ = CHECKS[name]
    assert PROBES[name], f"{what}: gone in the installed version; h2gate now takes its fallback"


def test_every_private_use_is_probed() -> None:
    """No module outside h2gate/internals reaches into OpenSSL._util, h2's or hpack's private names."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "h2gate"
    offenders = []
    for path in root.rglob("*.py"):
        if "internals" in path.parts:
            continue
        text = path.read_text()
        needles = ("OpenSSL._util", "._data_to_send", "._receive_goaway", "._receive_unknown", "dynamic_entries",
                   "._begin_new_stream", "._track_content_length", "_from_ssl", "._run_once")  # fmt: skip
        for needle in needles:
            if needle in text:
                offenders.append(f"{path.relative_to(root)}: {needle}")
    assert offenders == []
