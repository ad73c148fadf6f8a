"""Apps that fail under --loop trio because they need asyncio, and one that fails for its own reasons."""

from __future__ import annotations

import asyncio
from typing import Any


async def running_loop(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        asyncio.get_running_loop()  # RuntimeError: no running event loop, under trio
        raise AssertionError("only reached under asyncio")


async def own_bug(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        raise ValueError("a bug of the app's own, on any loop")
