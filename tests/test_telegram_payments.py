"""Telegram Stars end to end: the real bot (python-telegram-bot) against the fake Bot API's
Stars (`tests/fake_telegram_payments.py`): /buy, the invoice, the pre-checkout, the payment,
the same payment twice, a kill between payment and credit, refunds, and what the fake refuses."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot, LabeledPrice
from telegram.error import BadRequest

from bots.admin import quota_show
from bots.payments_admin import refund
from tests import test_telegram_bot
from tests.fake_telegram import ChatMessage, FakeTelegram, User
from tests.fake_telegram_payments import StarPayment
from tests.test_telegram_bot import ALICE, GROUP, ROOT, UPSTREAM_KEY, Harness
from tests.upstream_fakes import Echo, FakeUpstream

bot = test_telegram_bot.bot
"""The fixture of `tests/test_telegram_bot.py`: the bot, the fake Bot API and the upstream."""
ADMIN = User(9999, "Root", language_code="en")
SELLING: dict[str, Any] = {
    "payments_stars_packs": "10:50,50:200",
    "payments_support": "@retouch_help",
}


async def answer_of(bot: Harness, chat: int, message: ChatMessage, data: str) -> str:
    query = bot.tg.press_button(chat, ALICE, message.message_id, data)
    await bot.tg.wait_until(lambda: query in bot.tg.callback_answers)
    return str(bot.tg.callback_answers[query].get("text") or "")


async def invoice_for(bot: Harness, photos: int) -> ChatMessage:
    """Alice sends /buy and presses the pack of `photos`: the invoice the bot sends."""
    bot.tg.send_text(ALICE.id, ALICE, "/buy")
    offer = await bot.text_containing(ALICE.id, "Pick a pack")
    invoices = len(bot.tg.calls_to("sendInvoice"))
    assert await answer_of(bot, ALICE.id, offer, f"b:{photos}") == "Here is your invoice."
    [*_, call] = await bot.tg.wait_for("sendInvoice", invoices + 1, answered=True)
    assert call.ok, call.response
    return next(m for m in bot.tg.sent_to(ALICE.id) if m.call is call)


async def paid(bot: Harness, invoice: ChatMessage) -> StarPayment:
    """Alice pays the invoice; the payment, once Telegram has it."""
    before = len(bot.tg.stars.payments)
    bot.tg.stars.pay(ALICE, invoice)
    await bot.tg.wait_until(lambda: len(bot.tg.stars.payments) > before)
    return bot.tg.stars.payments[-1]


async def test_a_whole_stars_purchase(bot: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    await bot.start(**SELLING)
    commands = {c["command"] for c in bot.tg.calls_to("setMyCommands")[0].params["commands"]}
    assert {"buy", "terms", "paysupport"} <= commands
    bot.tg.send_text(GROUP, ALICE, "/buy")
    await bot.text_containing(GROUP, "send me /buy in a private chat")

    invoice = await invoice_for(bot, 10)
    assert invoice.message["invoice"] == {
        "title": "10 photo retouches",
        "description": (
            "10 extra photo retouches, used after your daily allowance. They never expire."
        ),
        "start_parameter": "",
        "currency": "XTR",
        "total_amount": 50,
    }
    assert invoice.call is not None and not invoice.call.params.get("provider_token")
    payment = await paid(bot, invoice)
    [answer] = bot.tg.calls_to("answerPreCheckoutQuery")
    assert answer.ok and answer.params["ok"] is True
    thanks = await bot.text_containing(ALICE.id, "Thank you!")
    assert thanks.text == "Thank you! 10 photos were added: you have 10 extra photos now."
    assert thanks.reply_to_message_id == payment.message["message_id"]

    bot.tg.send_text(ALICE.id, ALICE, "/quota")
    quota = await bot.text_containing(ALICE.id, "Today you've used")
    assert quota.text is not None and "(plus 10 extra credits)" in quota.text
    assert quota.text.endswith("You bought 10 photos with Stars (1 purchases).")
    bot.tg.send_text(ADMIN.id, ADMIN, "/stats")
    stats = await bot.text_containing(ADMIN.id, "Stars today")
    assert stats.text is not None and "Stars today: 1 purchases, 10 photos, 50 ⭐" in stats.text

    bot.tg.send_text(ALICE.id, ALICE, "/paysupport")
    await bot.text_containing(ALICE.id, "Contact @retouch_help")
    bot.tg.send_text(ALICE.id, ALICE, "/terms")
    terms = await bot.text_containing(ALICE.id, "Terms of sale.")
    assert terms.call is not None and "<b>Terms of sale.</b>" in terms.call.params["text"]

    assert await quota_show(bot.settings(), f"telegram:{ALICE.id}") == 0
    shown = capsys.readouterr().out
    assert "credits:  10" in shown and f"charge {payment.charge_id}" in shown
    assert "bought:   1 purchases:" in shown and "10 photos for 50 XTR" in shown


async def test_the_same_successful_payment_twice_counts_once(bot: Harness) -> None:
    await bot.start(**SELLING)
    payment = await paid(bot, await invoice_for(bot, 50))
    await bot.text_containing(ALICE.id, "Thank you! 50 photos were added")
    bot.tg.stars.deliver_again(payment)
    await bot.tg.wait_consumed()
    bot.tg.send_text(ALICE.id, ALICE, "/quota")
    quota = await bot.text_containing(ALICE.id, "Today you've used")
    assert quota.text is not None and "(plus 50 extra credits)" in quota.text
    assert len([t for t in bot.texts(ALICE.id) if t.startswith("Thank you!")]) == 1


async def test_a_pack_no_longer_on_sale_is_refused_at_the_pre_checkout(bot: Harness) -> None:
    await bot.start(**SELLING)
    invoice = await invoice_for(bot, 10)
    await bot.halt()
    await bot.start(payments_stars_packs="10:40")  # the price changed meanwhile
    query = bot.tg.stars.pay(ALICE, invoice)
    [answer] = await bot.tg.wait_for("answerPreCheckoutQuery", answered=True)
    assert answer.ok and answer.params["ok"] is False
    assert bot.tg.stars.queries[query].error_message == (
        "This offer is no longer available; send /buy to see the current packs."
    )
    assert bot.tg.stars.payments == []


async def test_a_refund_pays_back_and_takes_the_credits_back_once(bot: Harness) -> None:
    await bot.start(**SELLING)
    payment = await paid(bot, await invoice_for(bot, 10))
    await bot.text_containing(ALICE.id, "Thank you!")

    assert await refund(bot.settings(), bot.telegram(), payment.charge_id) == 0
    assert payment.refunded
    [call] = bot.tg.calls_to("refundStarPayment")
    assert call.params == {"user_id": ALICE.id, "telegram_payment_charge_id": payment.charge_id}
    bot.tg.send_text(ALICE.id, ALICE, "/quota")
    quota = await bot.text_containing(ALICE.id, "Today you've used")
    assert quota.text is not None and "extra credits" not in quota.text

    assert await refund(bot.settings(), bot.telegram(), payment.charge_id) == 1  # once
    assert await refund(bot.settings(), bot.telegram(), "no-such-charge") == 1
    assert len(bot.tg.calls_to("refundStarPayment")) == 1


async def test_spent_credits_are_not_refunded(
    bot: Harness, portrait_bytes: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    await bot.start(quota_per_user_per_day=1, **SELLING)
    payment = await paid(bot, await invoice_for(bot, 10))
    await bot.text_containing(ALICE.id, "Thank you!")
    for count in (1, 2):  # the day's one photo, then a bought one
        bot.tg.send_photo(ALICE.id, ALICE, portrait_bytes)
        await bot.result_for(ALICE.id, count)

    assert await refund(bot.settings(), bot.telegram(), payment.charge_id) == 1
    assert "bought 10 credits and the user has 9 left" in capsys.readouterr().err
    assert bot.tg.calls_to("refundStarPayment") == [] and not payment.refunded


async def test_a_kill_between_payment_and_credit_credits_once_at_the_next_start(
    bot: Harness, tmp_path: Path
) -> None:
    """The real `retouch-bot telegram` process gets the payment while its store is locked, and
    is killed (SIGKILL) before it could credit it. The next start finds it in the Stars history."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_API_KEY"))},
        "PYTHONPATH": str(ROOT),
        "TELEGRAM_BOT_TOKEN": bot.tg.token,
        "TELEGRAM_API_BASE_URL": bot.tg.base_url,
        "TELEGRAM_FILE_BASE_URL": bot.tg.base_file_url,
        "RETOUCH_API_KEY": UPSTREAM_KEY,
        "RETOUCH_API_BASE_URL": bot.upstream.base_url,
        "PAYMENTS_STARS_PACKS": "10:50",
        "PAYMENTS_SUPPORT": "@retouch_help",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "telegram", cwd=tmp_path, env=env
    )
    database: sqlite3.Connection | None = None
    try:
        await bot.tg.wait_for("getUpdates", timeout=60)
        invoice = await invoice_for(bot, 10)
        database = sqlite3.connect(tmp_path / "data" / "retouch.db", isolation_level=None)
        database.execute("BEGIN IMMEDIATE")  # no write gets through from now on
        payment = await paid(bot, invoice)
        await bot.tg.wait_consumed()  # the bot has the successful_payment...
        process.send_signal(signal.SIGKILL)  # ...and dies before any credit
        await process.wait()
    finally:
        if database is not None:
            database.rollback()
            database.close()
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert not [t for t in bot.texts(ALICE.id) if t.startswith("Thank you!")]

    await bot.start(**SELLING)  # the same store, in-process
    thanks = await bot.text_containing(ALICE.id, "Thank you! 10 photos were added")
    assert thanks.reply_to_message_id is None  # a message of its own: the payment is long past
    bot.tg.stars.deliver_again(payment)  # and should Telegram repeat it now: still once
    await bot.tg.wait_consumed()
    await bot.restart()
    bot.tg.send_text(ALICE.id, ALICE, "/quota")
    quota = await bot.text_containing(ALICE.id, "Today you've used")
    assert quota.text is not None and "(plus 10 extra credits)" in quota.text
    assert len([t for t in bot.texts(ALICE.id) if t.startswith("Thank you!")]) == 1
    assert [c.params.get("offset") for c in bot.tg.calls_to("getStarTransactions")][-1] == 1


async def test_the_fake_is_as_strict_as_telegram_about_stars() -> None:
    # The fake's payment rules, five invoices to one chat in a millisecond: no flood limits.
    async with FakeTelegram(enforce_limits=False) as tg, FakeUpstream(default=Echo()):
        api = Bot(tg.token, base_url=tg.base_url, base_file_url=tg.base_file_url)
        tg.send_text(ALICE.id, ALICE, "hi")
        now = [0.0]
        tg.stars.clock = lambda: now[0]
        async with api:
            price = [LabeledPrice("10 photos", 50)]
            with pytest.raises(BadRequest, match=r"(?i)provider_token_invalid"):
                await api.send_invoice(ALICE.id, "t", "d", "p", "XTR", price, provider_token="x")
            with pytest.raises(BadRequest, match=r"(?i)exactly one price"):
                await api.send_invoice(ALICE.id, "t", "d", "p", "XTR", price * 2)
            with pytest.raises(BadRequest, match=r"(?i)invoice_title_invalid"):
                await api.send_invoice(ALICE.id, "t" * 33, "d", "p", "XTR", price)
            await api.send_invoice(ALICE.id, "t", "d", "credits:10:50", "XTR", price)
            invoice = tg.sent_to(ALICE.id)[-1]
            late = tg.stars.pay(ALICE, invoice)
            now[0] = 10.5  # past Telegram's 10 seconds
            with pytest.raises(BadRequest, match=r"(?i)query is too old"):
                await api.answer_pre_checkout_query(late, ok=True)
            on_time = tg.stars.pay(ALICE, invoice)
            with pytest.raises(BadRequest, match=r"(?i)error_message is required"):
                await api.answer_pre_checkout_query(on_time, ok=False)
            assert await api.answer_pre_checkout_query(on_time, ok=True)
            with pytest.raises(BadRequest, match=r"(?i)query is too old"):  # once
                await api.answer_pre_checkout_query(on_time, ok=True)
            [payment] = tg.stars.payments
            with pytest.raises(BadRequest, match=r"(?i)charge_not_found"):
                await api.refund_star_payment(ALICE.id + 1, payment.charge_id)
            assert await api.refund_star_payment(ALICE.id, payment.charge_id)
            with pytest.raises(BadRequest, match=r"(?i)charge_already_refunded"):
                await api.refund_star_payment(ALICE.id, payment.charge_id)
            history = await api.get_star_transactions()
            assert [t.id for t in history.transactions] == [payment.charge_id] * 2
            assert history.transactions[0].source is not None
            assert history.transactions[1].receiver is not None
