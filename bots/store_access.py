"""The store as the operator commands use it: opened, used and closed, a failure in one line."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

from core.errors import StoreError
from core.settings import Settings
from core.store import JobStore, open_store


def failure_line(exc: StoreError) -> str:
    """`exc` for people: what went wrong, then the fix the store named, if any."""
    fix = exc.params.get("fix")
    return f"{exc} — fix: {fix}" if fix else str(exc)


async def with_store(settings: Settings, work: Callable[[JobStore], Awaitable[int]]) -> int:
    """`work` on the configured store; exit code 1, said in one line on stderr, when the store
    fails (to open, or under `work`)."""
    try:
        store = await open_store(settings)
        try:
            return await work(store)
        finally:
            await store.close()
    except StoreError as exc:
        print(f"retouch-bot: {failure_line(exc)}", file=sys.stderr)
        return 1
