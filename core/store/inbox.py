"""The inbox in SQL, for both databases: platform updates kept from arrival until handled.

An update is inserted `pending` before the platform is told it arrived (a conflict on the key
means it came before: the platform re-sent it); it turns `done` when it was handled, in the
same transaction as the job it admitted (`TAKE_UPDATE`, run by `reserve_job`) or on its own
(`finish_update`). Done rows are kept only until the platform can no longer re-send them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from core.store.access import SqlAccess
from core.store.dialect import Tx

STORE_UPDATE: Final = (
    "INSERT INTO inbox (platform, update_id, payload, state, received_at) "
    "VALUES ($1, $2, $3, 'pending', $4) ON CONFLICT (platform, update_id) DO NOTHING "
    "RETURNING update_id"
)
TAKE_UPDATE: Final = (
    "UPDATE inbox SET state = 'done' WHERE platform = $1 AND update_id = $2 AND state = 'pending'"
)
"""Mark an update handled; run in the transaction that does what handling it meant."""
PENDING_UPDATES: Final = (
    "SELECT update_id, payload FROM inbox WHERE platform = $1 AND state = 'pending' "
    "ORDER BY update_id LIMIT $2"
)


class InboxRows:
    """The `JobStore` methods of the inbox, mixed into `SqlStore`."""

    async def store_update(
        self: SqlAccess, platform: str, update_id: int, payload: dict[str, Any]
    ) -> bool:
        """Keep a new update as pending; False when it was stored before (a re-sent one)."""
        rows = await self._write(
            STORE_UPDATE, platform, update_id, self.dialect.json_param(payload), self._clock()
        )
        return bool(rows)

    async def store_updates(
        self: SqlAccess, platform: str, updates: Sequence[tuple[int, dict[str, Any]]]
    ) -> list[int]:
        """Keep a batch of updates (one getUpdates answer) in one transaction; the ids of those
        new to the store."""
        now = self._clock()
        json_param = self.dialect.json_param

        async def work(tx: Tx) -> list[int]:
            fresh = []
            for update_id, payload in updates:
                if await tx.fetchval(STORE_UPDATE, platform, update_id, json_param(payload), now):
                    fresh.append(update_id)
            return fresh

        return await self._transaction(work) if updates else []

    async def pending_updates(
        self: SqlAccess, platform: str, limit: int = 1000
    ) -> list[tuple[int, dict[str, Any]]]:
        """Stored updates not yet handled, oldest first: what a restart handles before any new."""
        rows = await self._fetch(PENDING_UPDATES, platform, limit)
        return [(int(row[0]), self.dialect.json_value(row[1])) for row in rows]

    async def finish_update(self: SqlAccess, platform: str, update_id: int) -> None:
        """Mark an update handled (a no-op when it already is, or was never stored)."""
        await self._write(f"{TAKE_UPDATE} RETURNING update_id", platform, update_id)

    async def prune_updates(
        self: SqlAccess, platform: str, *, below: int | None = None, before: float | None = None
    ) -> int:
        """Delete handled updates with an id below `below` or received before `before`."""
        rows = await self._write(
            "DELETE FROM inbox WHERE platform = $1 AND state = 'done' AND ("
            "update_id < CAST($2 AS bigint) OR received_at < CAST($3 AS double precision)) "
            "RETURNING update_id",
            platform,
            below,
            before,
        )
        return len(rows)
