"""`retouch-bot payments refund CHARGE_ID`: pay a Telegram Stars purchase back and take its
credits back, refused when they were spent.

The credits are taken back first (in one transaction, or not at all), then Telegram's
`refundStarPayment` is asked; if Telegram refuses, the credits come back. When the answer is
lost (a timeout) the purchase stays `refunding`: running the command again finishes it, and a
charge Telegram says it refunded already counts as refunded.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

from telegram import Bot
from telegram.error import BadRequest, TelegramError

from bots.telegram.settings import TelegramSettings
from bots.telegram.target import PLATFORM
from core.errors import PaymentError
from core.payments import Payments, RefundRefusedError
from core.quota import QuotaPolicy
from core.settings import Settings
from core.store import Purchase, open_store

ALREADY_REFUNDED = "CHARGE_ALREADY_REFUNDED"


def telegram_refunder(bot: Bot) -> Callable[[Purchase], Awaitable[None]]:
    """`pay_back` for `Payments.refund`: Telegram's `refundStarPayment` for the purchase."""

    async def pay_back(purchase: Purchase) -> None:
        try:
            await bot.refund_star_payment(int(purchase.user_id), purchase.charge_id)
        except BadRequest as exc:
            if ALREADY_REFUNDED in exc.message.upper():
                return  # an earlier run got through before it could record it
            raise RefundRefusedError(f"Telegram refused the refund: {exc.message}") from None

    return pay_back


async def run_refund(settings: Settings, charge_id: str) -> int:
    """The command: Telegram's settings read (their token redacted in logs), then `refund`."""
    from core.logs import setup_logging

    telegram = TelegramSettings.load()
    setup_logging(settings, telegram)
    return await refund(settings, telegram, charge_id)


async def refund(settings: Settings, telegram: TelegramSettings, charge_id: str) -> int:
    """Refund one purchase; 0 when refunded, 1 when refused or unfinished (said why)."""
    token = telegram.bot_token.get_secret_value()
    if not token:
        print("retouch-bot: TELEGRAM_BOT_TOKEN must be set to refund a payment", file=sys.stderr)
        return 2
    store = await open_store(settings)
    try:
        policy = QuotaPolicy(settings.quota_per_user_per_day, tz=settings.quota_timezone)
        payments = Payments(store, policy, settings.payments_stars_packs)
        bot = Bot(token, base_url=telegram.api_base_url, base_file_url=telegram.file_base_url)
        pay_back = telegram_refunder(bot)
        try:
            async with bot:
                done = await payments.refund(PLATFORM, charge_id, pay_back)
        except PaymentError as exc:
            print(f"retouch-bot: {exc}", file=sys.stderr)
            return 1
        except (TelegramError, OSError, TimeoutError) as exc:
            print(
                f"retouch-bot: Telegram did not answer ({type(exc).__name__}); the refund of "
                f"{charge_id} may or may not have gone through: run the command again to finish "
                "it (its credits stay taken back meanwhile)",
                file=sys.stderr,
            )
            return 1
    finally:
        await store.close()
    print(
        f"refunded {done.amount} {done.currency} to {done.platform}:{done.user_id} "
        f"(charge {done.charge_id}); {done.credits} credits taken back"
    )
    return 0
