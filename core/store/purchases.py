"""Purchases in SQL, for both databases: recorded once per charge id, refunded only while unspent.

A purchase and its credits go in one transaction, keyed by `(platform, charge_id)`, so the same
payment reported twice (a repeated update, a replay after a crash, a check of the platform's
history) adds its credits once, however many replicas see it at once. A refund is two steps
around the platform's call: `begin_refund_tx` takes the credits back (or refuses, when they are
spent) and marks the purchase `refunding`; `finish_refund_tx` marks it refunded, or gives the
credits back if the platform refused. A refund cut off between the two is finished by running it
again. Rows are locked purchase first, then credits: the order no other transaction reverses.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from core.errors import AlreadyRefundedError, CreditsSpentError, PurchaseNotFoundError
from core.store.access import SqlAccess
from core.store.dialect import Row, Tx, placeholders
from core.store.ledger import GRANT
from core.store.protocol import Purchase, PurchaseTotals

PURCHASE_COLUMNS: Final = tuple(field.name for field in dataclasses.fields(Purchase))
_COLUMNS: Final = ", ".join(PURCHASE_COLUMNS)
SELECT_PURCHASES: Final = f"SELECT {_COLUMNS} FROM purchases"  # noqa: S608
INSERT_PURCHASE: Final = (
    f"INSERT INTO purchases ({_COLUMNS}) VALUES ({placeholders(len(PURCHASE_COLUMNS))}) "  # noqa: S608
    "ON CONFLICT (platform, charge_id) DO NOTHING RETURNING 1"
)
TAKE_CREDITS: Final = (
    "UPDATE credits SET balance = balance - CAST($3 AS integer) "
    "WHERE platform = $1 AND user_id = $2 AND balance >= CAST($3 AS integer) RETURNING balance"
)
TOTALS: Final = (
    "SELECT COUNT(*) FILTER (WHERE state <> 'refunded'), "
    "COALESCE(SUM(credits) FILTER (WHERE state <> 'refunded'), 0), "
    "COALESCE(SUM(amount) FILTER (WHERE state <> 'refunded'), 0), "
    "COUNT(*) FILTER (WHERE state = 'refunded') FROM purchases"
)
"""The sums of `PurchaseTotals`; a WHERE clause may follow."""


def purchase_params(purchase: Purchase) -> tuple[object, ...]:
    return dataclasses.astuple(purchase)


def purchase_from_row(row: Row) -> Purchase:
    return Purchase(*row)


def totals_from_row(row: Row | None) -> PurchaseTotals:
    if row is None:
        return PurchaseTotals()
    return PurchaseTotals(*(int(value or 0) for value in row))


async def record_purchase_tx(tx: Tx, purchase: Purchase) -> bool:
    """Insert the purchase and add its credits; False when its charge id is already there."""
    if await tx.fetchval(INSERT_PURCHASE, *purchase_params(purchase)) is None:
        return False
    await tx.fetchval(GRANT, purchase.platform, purchase.user_id, purchase.credits)
    return True


async def _locked(tx: Tx, platform: str, charge_id: str) -> Purchase:
    row = await tx.fetchrow(
        f"{SELECT_PURCHASES} WHERE platform = $1 AND charge_id = $2{tx.dialect.lock_row}",
        platform,
        charge_id,
    )
    if row is None:
        raise PurchaseNotFoundError(
            f"No purchase with charge id {charge_id} is recorded.", charge_id=charge_id
        )
    return purchase_from_row(row)


async def _set_state(tx: Tx, purchase: Purchase) -> Purchase:
    await tx.execute(
        "UPDATE purchases SET state = $3, refunded_at = $4 WHERE platform = $1 AND charge_id = $2",
        purchase.platform,
        purchase.charge_id,
        purchase.state,
        purchase.refunded_at,
    )
    return purchase


async def begin_refund_tx(tx: Tx, platform: str, charge_id: str) -> Purchase:
    """Take the credits back and mark the purchase `refunding` (see the module's docstring)."""
    purchase = await _locked(tx, platform, charge_id)
    if purchase.state == "refunded":
        raise AlreadyRefundedError(
            f"Purchase {charge_id} was already refunded.", charge_id=charge_id
        )
    if purchase.state == "refunding":
        return purchase
    user = (purchase.platform, purchase.user_id)
    if await tx.fetchval(TAKE_CREDITS, *user, purchase.credits) is None:
        balance = await tx.fetchval(
            "SELECT balance FROM credits WHERE platform = $1 AND user_id = $2", *user
        )
        raise CreditsSpentError(
            f"Purchase {charge_id} bought {purchase.credits} credits and the user has "
            f"{balance or 0} left: they were spent, so the payment cannot be refunded.",
            charge_id=charge_id,
            credits=purchase.credits,
            balance=balance or 0,
        )
    return await _set_state(tx, dataclasses.replace(purchase, state="refunding"))


async def finish_refund_tx(
    tx: Tx, platform: str, charge_id: str, *, refunded: bool, now: float
) -> Purchase:
    """Mark a `refunding` purchase refunded, or paid again with its credits back."""
    purchase = await _locked(tx, platform, charge_id)
    if purchase.state != "refunding":
        return purchase
    if refunded:
        done = dataclasses.replace(purchase, state="refunded", refunded_at=now)
        return await _set_state(tx, done)
    await tx.fetchval(GRANT, purchase.platform, purchase.user_id, purchase.credits)
    return await _set_state(tx, dataclasses.replace(purchase, state="paid"))


class PurchaseRows:
    """The `JobStore` methods of purchases and refunds, mixed into `SqlStore`."""

    async def record_purchase(self: SqlAccess, purchase: Purchase) -> bool:
        """Record the purchase and add its credits at once; False if its charge id is known."""
        return await self._transaction(lambda tx: record_purchase_tx(tx, purchase))

    async def get_purchase(self: SqlAccess, platform: str, charge_id: str) -> Purchase | None:
        """The purchase with this charge id, or None."""
        row = await self._fetchrow(
            f"{SELECT_PURCHASES} WHERE platform = $1 AND charge_id = $2", platform, charge_id
        )
        return purchase_from_row(row) if row else None

    async def purchases(self: SqlAccess, platform: str, user_id: str) -> list[Purchase]:
        """The user's purchases, newest first."""
        rows = await self._fetch(
            f"{SELECT_PURCHASES} WHERE platform = $1 AND user_id = $2 "
            "ORDER BY created_at DESC, charge_id",
            platform,
            user_id,
        )
        return [purchase_from_row(row) for row in rows]

    async def purchase_totals(
        self: SqlAccess, *, day: str | None = None, user: tuple[str, str] | None = None
    ) -> PurchaseTotals:
        """Purchases summed: all, those of one quota day, or those of one user."""
        if user is not None:
            row = await self._fetchrow(f"{TOTALS} WHERE platform = $1 AND user_id = $2", *user)
        elif day is not None:
            row = await self._fetchrow(f"{TOTALS} WHERE day = $1", day)
        else:
            row = await self._fetchrow(TOTALS)
        return totals_from_row(row)

    async def begin_refund(self: SqlAccess, platform: str, charge_id: str) -> Purchase:
        """Take the purchase's credits back and mark it refunding (refused once spent)."""
        return await self._transaction(lambda tx: begin_refund_tx(tx, platform, charge_id))

    async def finish_refund(
        self: SqlAccess, platform: str, charge_id: str, *, refunded: bool
    ) -> Purchase:
        """Mark a refunding purchase refunded, or paid again with its credits back."""
        now = self._clock()
        return await self._transaction(
            lambda tx: finish_refund_tx(tx, platform, charge_id, refunded=refunded, now=now)
        )

    async def payments_cursor(self: SqlAccess, platform: str) -> int:
        """How many of the platform's payment transactions were checked already."""
        row = await self._fetchrow(
            "SELECT scanned FROM payment_cursors WHERE platform = $1", platform
        )
        return int(row[0]) if row else 0

    async def set_payments_cursor(self: SqlAccess, platform: str, scanned: int) -> None:
        """Move the platform's payments cursor forward to `scanned`."""
        await self._write(
            "INSERT INTO payment_cursors AS c (platform, scanned) VALUES ($1, $2) "
            "ON CONFLICT (platform) DO UPDATE SET scanned = excluded.scanned "
            "WHERE c.scanned < excluded.scanned",
            platform,
            scanned,
        )
