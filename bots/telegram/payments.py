"""Telegram Stars: `/buy` (a button per pack, then an invoice in XTR), the pre-checkout answer,
the successful payment, `/paysupport` and `/terms`, and catching up on payments missed while the
bot was down.

Telegram's rules for digital goods: Stars only (currency `XTR`, no provider token, one price),
the pre-checkout query answered within 10 seconds (so that answer reads no store), and a
`/paysupport` and terms of sale. Credits are added once per `telegram_payment_charge_id`
(`core.payments`): a payment reported twice, or replayed from the Stars history after a crash
between the payment and its credit, counts once.
"""

from __future__ import annotations

import logging

from telegram import LabeledPrice, Message, StarTransaction, TransactionPartnerUser, Update
from telegram.constants import ChatType, ParseMode
from telegram.constants import TransactionPartnerUser as PartnerKind
from telegram.error import TelegramError
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    PreCheckoutQueryHandler,
    filters,
)

from bots import messages as m
from bots.telegram.keyboards import BUY, buy_keyboard
from bots.telegram.parts import BotParts
from bots.telegram.replies import reply
from bots.telegram.target import PLATFORM
from core.payments import CURRENCY, Payment, Payments
from core.settings import Settings
from core.store import Purchase

log = logging.getLogger("retouch.telegram")
Context = ContextTypes.DEFAULT_TYPE
PAGE = 100
"""Stars transactions asked for at once (Telegram's maximum)."""


class PaymentHandlers:
    """The handlers of the Stars flow, and `catch_up` for payments the bot did not see."""

    def __init__(self, parts: BotParts, payments: Payments, settings: Settings) -> None:
        self.service = parts.service
        self.bot = parts.bot
        self.languages = parts.languages
        self.payments = payments
        self.support = settings.payments_support
        self.terms_url = settings.payments_terms_url

    def handlers(self) -> list[BaseHandler[Update, Context, None]]:
        return [
            CommandHandler("buy", self.on_buy),
            CommandHandler("paysupport", self.on_paysupport),
            CommandHandler("terms", self.on_terms),
            CallbackQueryHandler(self.on_pack, pattern=rf"^{BUY}:"),
            PreCheckoutQueryHandler(self.on_pre_checkout),
            MessageHandler(filters.SUCCESSFUL_PAYMENT, self.on_paid),
        ]

    # --- buying ---------------------------------------------------------------------------

    async def on_buy(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is None:
            return
        lang = await self.languages.of(message)
        if not self.payments.enabled:
            await reply(message, m.text("buy_off", lang))
        elif message.chat.type != ChatType.PRIVATE:
            await reply(message, m.text("buy_private", lang))
        else:
            await reply(message, m.text("buy_offer", lang), buy_keyboard(self.payments.packs, lang))

    async def on_pack(self, update: Update, context: Context) -> None:
        """A pack's button: the invoice for it, in the private chat."""
        query = update.callback_query
        if query is None or query.data is None or not isinstance(query.message, Message):
            return
        lang = await self.languages.of_user(query.from_user, query.message.chat)
        photos = query.data.partition(":")[2]
        pack = self.payments.pack(int(photos)) if photos.isdigit() else None
        if pack is None or query.message.chat.type != ChatType.PRIVATE:
            refusal = m.text("offer_gone", lang)
            await query.answer(refusal, show_alert=True)
            return
        chat_id = query.message.chat.id
        label = m.text("invoice_label", lang, photos=pack.photos)
        await query.answer(m.text("invoice_sent", lang))
        await self.bot.send_invoice(
            chat_id=chat_id,
            title=m.text("invoice_title", lang, photos=pack.photos),
            description=m.text("invoice_description", lang, photos=pack.photos),
            payload=pack.payload,
            currency=CURRENCY,
            prices=[LabeledPrice(label, pack.stars)],
        )

    async def on_pre_checkout(self, update: Update, context: Context) -> None:
        """Accept a payment for a pack on sale at its price; anything else is refused.

        Telegram cancels the payment unless this is answered within 10 s: nothing slow here.
        """
        query = update.pre_checkout_query
        if query is None:
            return
        refusal = self.payments.refusal(query.invoice_payload, query.currency, query.total_amount)
        if refusal is None:
            await query.answer(ok=True)
            return
        lang = m.lang_for(query.from_user.language_code)
        error = m.text(refusal, lang)
        await query.answer(ok=False, error_message=error)

    async def on_paid(self, update: Update, context: Context) -> None:
        """The payment went through: add the credits (once) and say thank you."""
        message = update.effective_message
        paid = message.successful_payment if message is not None else None
        if message is None or paid is None or message.from_user is None:
            return
        purchase = await self.payments.record(
            Payment(
                platform=PLATFORM,
                charge_id=paid.telegram_payment_charge_id,
                payer=str(message.from_user.id),
                payload=paid.invoice_payload,
                currency=paid.currency,
                amount=paid.total_amount,
                provider_charge_id=paid.provider_payment_charge_id or None,
            )
        )
        if purchase is None:
            log.info("payment %s was recorded before", paid.telegram_payment_charge_id)
            return
        await reply(message, await self._thanks(purchase, await self.languages.of(message)))

    # --- support --------------------------------------------------------------------------

    async def on_paysupport(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is None:
            return
        lang = await self.languages.of(message)
        if not self.support:
            await reply(message, m.text("buy_off", lang))
            return
        await reply(message, m.text("paysupport", lang, support=self.support))

    async def on_terms(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is None:
            return
        lang = await self.languages.of(message)
        more = m.text("terms_more", lang, url=self.terms_url) if self.terms_url else ""
        await reply(message, m.text("terms", lang) + more)

    # --- catching up ----------------------------------------------------------------------

    async def catch_up(self) -> int:
        """Record the Stars payments Telegram has that the store lacks (the bot was down, or
        died between a payment and its credit), from where the last look ended; how many.

        Telegram lists transactions in chronological order, so the store keeps how many it has
        read; every payment found is recorded idempotently all the same.
        """
        scanned = await self.service.store.payments_cursor(PLATFORM)
        found = 0
        while True:
            try:
                page = await self.bot.get_star_transactions(scanned, PAGE)
            except TelegramError as exc:
                log.warning("could not read the Stars transactions: %s", exc.message)
                return found
            for transaction in page.transactions:
                payment = incoming_payment(transaction)
                purchase = await self.payments.record(payment) if payment is not None else None
                if purchase is not None:
                    found += 1
                    log.info("payment %s recorded from the Stars history", purchase.charge_id)
                    await self._tell(purchase)
            scanned += len(page.transactions)
            await self.service.store.set_payments_cursor(PLATFORM, scanned)
            if len(page.transactions) < PAGE:
                return found

    async def _thanks(self, purchase: Purchase, lang: m.Lang) -> str:
        status = await self.service.quota_status(PLATFORM, purchase.user_id)
        return m.text("paid", lang, photos=purchase.credits, credits=status.credits)

    async def _tell(self, purchase: Purchase) -> None:
        """Thank a payer the bot had not answered (in their private chat)."""
        user = int(purchase.user_id)
        lang = await self.service.preferences.language(PLATFORM, purchase.user_id, None, None)
        line = m.to_html(await self._thanks(purchase, lang))
        try:
            await self.bot.send_message(user, line, parse_mode=ParseMode.HTML)
        except TelegramError as exc:
            log.warning("could not thank user %s for payment: %s", user, exc.message)


def incoming_payment(transaction: StarTransaction) -> Payment | None:
    """A user's payment for an invoice, from the Stars history (refunds and others: None)."""
    source = transaction.source
    if not isinstance(source, TransactionPartnerUser) or transaction.amount <= 0:
        return None
    if source.transaction_type != PartnerKind.INVOICE_PAYMENT or not source.invoice_payload:
        return None
    return Payment(
        platform=PLATFORM,
        charge_id=transaction.id,
        payer=str(source.user.id),
        payload=source.invoice_payload,
        currency=CURRENCY,
        amount=transaction.amount,
    )
