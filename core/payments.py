"""Credits bought with Telegram Stars: the packs on sale, what an invoice carries, recording a
payment exactly once, and refunding one only while its credits are unspent.

A pack is `photos:stars` (`PAYMENTS_STARS_PACKS=10:50,50:200`). Its invoice payload names the
pack (`credits:<photos>:<stars>`), so the payment that comes back says what was bought even if
the packs on sale changed meanwhile. Bought credits are the same credits an admin grants: spent
after the daily allowance, never expiring. The platform's calls (the invoice, the refund) stay in
the adapter; this module is the rules and the store.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from core.errors import PaymentError
from core.packs import Pack
from core.quota import QuotaPolicy
from core.store import JobStore, Purchase

__all__ = ["CURRENCY", "Pack", "Payment", "Payments", "Purchase", "RefundRefusedError"]

CURRENCY: Final = "XTR"
"""Telegram Stars: digital goods are sold for Stars only, with no payment provider."""


class RefundRefusedError(PaymentError):
    """The platform answered that it will not refund this payment."""

    code = "refund_refused"


@dataclass(frozen=True, slots=True)
class Payment:
    """A successful payment as the platform reports it (live, or from its history)."""

    platform: str
    charge_id: str
    payer: str
    payload: str
    currency: str
    amount: int
    provider_charge_id: str | None = None


class Payments:
    """The packs on sale and the purchases ledger of one platform."""

    def __init__(
        self,
        store: JobStore,
        policy: QuotaPolicy,
        packs: list[Pack],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.policy = policy
        self.packs = list(packs)
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self.packs)

    async def cursor(self, platform: str) -> int:
        """How many of the platform's payment history entries were read (`set_cursor`)."""
        return await self.store.payments_cursor(platform)

    async def set_cursor(self, platform: str, scanned: int) -> None:
        await self.store.set_payments_cursor(platform, scanned)

    def pack(self, photos: int) -> Pack | None:
        """The pack of `photos` on sale now."""
        return next((p for p in self.packs if p.photos == photos), None)

    def refusal(self, payload: str, currency: str, amount: int) -> str | None:
        """Why a payment about to be made must be refused (the pre-checkout answer), or None.

        Only a pack on sale now, at its price in Stars, is accepted.
        """
        pack = Pack.from_payload(payload)
        if pack is None or currency != CURRENCY or self.pack(pack.photos) != pack:
            return "offer_gone"
        if amount != pack.stars:
            return "offer_gone"
        return None

    async def record(self, payment: Payment) -> Purchase | None:
        """Add the credits a payment bought, once per charge id; None when it was recorded
        before (the same payment reported again) or is not a payment for one of our packs."""
        pack = Pack.from_payload(payment.payload)
        if pack is None or payment.amount <= 0:
            return None
        now = self._clock()
        purchase = Purchase(
            platform=payment.platform,
            charge_id=payment.charge_id,
            user_id=payment.payer,
            credits=pack.photos,
            amount=payment.amount,
            currency=payment.currency,
            payload=payment.payload,
            day=self.policy.day_key(now),
            created_at=now,
            provider_charge_id=payment.provider_charge_id,
        )
        return purchase if await self.store.record_purchase(purchase) else None

    async def refund(
        self, platform: str, charge_id: str, pay_back: Callable[[Purchase], Awaitable[None]]
    ) -> Purchase:
        """Take the credits back, have the platform pay the buyer back, and mark it refunded.

        `pay_back` returns once the platform refunded (or says it already had); it raises
        `RefundRefusedError` when the platform refuses, and then the credits come back. Any other
        failure leaves the purchase `refunding` (the platform may or may not have paid): running
        the refund again finishes it.
        """
        purchase = await self.store.begin_refund(platform, charge_id)
        try:
            await pay_back(purchase)
        except RefundRefusedError:
            await self.store.finish_refund(platform, charge_id, refunded=False)
            raise
        return await self.store.finish_refund(platform, charge_id, refunded=True)
