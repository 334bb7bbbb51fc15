"""Telegram Stars for the fake Bot API: invoices, the pre-checkout query, the payment, refunds
and the Stars history, as strict as the Bot API's documentation.

- `sendInvoice`: title 1-32 characters, description 1-255, payload 1-128 bytes; in Stars
  (`XTR`) the provider token must be empty and `prices` exactly one positive amount.
- A user paying an invoice (`pay`) makes a `pre_checkout_query`; the bot must answer it once,
  within 10 seconds (of `clock`), else the query is gone and nothing is paid. `ok` true completes
  the payment: a `successful_payment` message from the user, with a new
  `telegram_payment_charge_id`, and an incoming transaction in the Stars history.
- `refundStarPayment(user_id, telegram_payment_charge_id)` needs a charge of that user, once.
- `getStarTransactions(offset, limit)` lists the history in chronological order; a refund shows
  as an outgoing transaction with the id of the payment it refunds.

    invoice = await fake.wait_for("sendInvoice", answered=True)
    fake.stars.pay(ALICE, invoice_message)
    [payment] = await ... fake.stars.payments
    fake.stars.deliver_again(payment)        # the same successful_payment a second time
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.fake_telegram import JSON, Call, ChatMessage, User, bad_request

if TYPE_CHECKING:
    from tests.fake_telegram import FakeTelegram

ANSWER_WITHIN = 10.0
"""Seconds Telegram waits for the answer to a pre-checkout query."""
QUERY_GONE = "query is too old and response timeout expired or query ID is invalid"


@dataclass(eq=False)
class PreCheckout:
    """A pre-checkout query sent to the bot, and what it answered."""

    id: str
    user: User
    invoice: JSON
    payload: str
    asked_at: float
    answered: bool = False
    ok: bool | None = None
    error_message: str | None = None


@dataclass(eq=False)
class StarPayment:
    """A completed payment: its charge id, who paid, for what, and its message."""

    charge_id: str
    user: User
    payload: str
    amount: int
    message: JSON
    refunded: bool = False


class StarsPayments:
    """Stars on the fake; registered in `FakeTelegram`'s handler table."""

    def __init__(self, fake: FakeTelegram, clock: Callable[[], float] = time.monotonic) -> None:
        self.fake = fake
        self.clock = clock
        self.queries: dict[str, PreCheckout] = {}
        self.payments: list[StarPayment] = []
        self.transactions: list[JSON] = []
        self._numbers = itertools.count(1)

    def handlers(self) -> dict[str, Any]:
        return {
            "sendInvoice": self.send_invoice,
            "answerPreCheckoutQuery": self.answer_pre_checkout_query,
            "refundStarPayment": self.refund_star_payment,
            "getStarTransactions": self.get_star_transactions,
        }

    # --- what users do --------------------------------------------------------------------

    def pay(self, user: User, invoice: ChatMessage) -> str:
        """`user` presses Pay under the bot's invoice: a pre-checkout query; returns its id."""
        details = invoice.message.get("invoice")
        if not invoice.from_bot or details is None:
            raise ValueError("that message is not one of the bot's invoices")
        assert invoice.call is not None
        query_id = str(8_000_000_000 + next(self._numbers))
        payload = str(invoice.call.params["payload"])
        self.queries[query_id] = PreCheckout(query_id, user, details, payload, self.clock())
        self.fake.enqueue_update(
            {
                "pre_checkout_query": {
                    "id": query_id,
                    "from": user.to_dict(),
                    "currency": details["currency"],
                    "total_amount": details["total_amount"],
                    "invoice_payload": payload,
                }
            }
        )
        return query_id

    def deliver_again(self, payment: StarPayment) -> None:
        """The same `successful_payment` message reaches the bot once more."""
        self.fake.enqueue_update({"message": payment.message})

    # --- the Bot API ----------------------------------------------------------------------

    async def send_invoice(self, call: Call) -> JSON:
        params = call.params
        title, description = str(params.get("title") or ""), str(params.get("description") or "")
        payload = str(params.get("payload") or "")
        currency = str(params.get("currency") or "")
        if not 1 <= len(title) <= 32:
            raise bad_request("INVOICE_TITLE_INVALID: title must be 1-32 characters")
        if not 1 <= len(description) <= 255:
            raise bad_request("INVOICE_DESCRIPTION_INVALID: description must be 1-255 characters")
        if not 1 <= len(payload.encode()) <= 128:
            raise bad_request("INVOICE_PAYLOAD_INVALID: payload must be 1-128 bytes")
        prices = params.get("prices")
        if isinstance(prices, str):
            prices = json.loads(prices)
        if not isinstance(prices, list) or not prices:
            raise bad_request("can't parse prices JSON object")
        if currency == "XTR":
            if params.get("provider_token"):
                raise bad_request("PROVIDER_TOKEN_INVALID: payments in Telegram Stars take none")
            if len(prices) != 1:
                raise bad_request("STARS_INVOICE_INVALID: exactly one price is required")
        elif not params.get("provider_token"):
            raise bad_request("PAYMENT_PROVIDER_INVALID")
        amounts = [p.get("amount") if isinstance(p, dict) else None for p in prices]
        if not all(isinstance(a, int) and not isinstance(a, bool) and a > 0 for a in amounts):
            raise bad_request("can't parse prices: every amount must be a positive integer")
        total = sum(int(a or 0) for a in amounts)
        content = {
            "invoice": {
                "title": title,
                "description": description,
                "start_parameter": str(params.get("start_parameter") or ""),
                "currency": currency,
                "total_amount": total,
            }
        }
        return self.fake._bot_message(call, content, data=None, upload=None)

    async def answer_pre_checkout_query(self, call: Call) -> bool:
        query = self.queries.get(str(call.params.get("pre_checkout_query_id", "")))
        if query is None or query.answered or self.clock() - query.asked_at > ANSWER_WITHIN:
            raise bad_request(QUERY_GONE)
        ok = call.params.get("ok")
        if not isinstance(ok, bool):
            raise bad_request("ok must be a boolean")
        error = call.params.get("error_message")
        if not ok and not error:
            raise bad_request("error_message is required when ok is false")
        query.answered, query.ok = True, ok
        query.error_message = str(error) if error is not None else None
        if ok:
            self._complete(query)
        return True

    async def refund_star_payment(self, call: Call) -> bool:
        user_id = call.params.get("user_id")
        charge_id = str(call.params.get("telegram_payment_charge_id") or "")
        payment = next((p for p in self.payments if p.charge_id == charge_id), None)
        if payment is None or payment.user.id != user_id:
            raise bad_request("CHARGE_NOT_FOUND")
        if payment.refunded:
            raise bad_request("CHARGE_ALREADY_REFUNDED")
        payment.refunded = True
        self.transactions.append(
            {
                "id": payment.charge_id,
                "amount": payment.amount,
                "date": int(time.time()),
                "receiver": self._partner(payment.user, payment.payload),
            }
        )
        return True

    async def get_star_transactions(self, call: Call) -> JSON:
        offset = call.params.get("offset", 0)
        limit = call.params.get("limit", 100)
        if not isinstance(offset, int) or offset < 0:
            raise bad_request("offset must be a non-negative integer")
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            raise bad_request("limit must be between 1 and 100")
        return {"transactions": self.transactions[offset : offset + limit]}

    # --- internals ------------------------------------------------------------------------

    def _complete(self, query: PreCheckout) -> None:
        charge_id = f"stxFake{next(self._numbers):06d}-{query.user.id}"
        amount = int(query.invoice["total_amount"])
        paid = {
            "successful_payment": {
                "currency": query.invoice["currency"],
                "total_amount": amount,
                "invoice_payload": query.payload,
                "telegram_payment_charge_id": charge_id,
                "provider_payment_charge_id": "",
            }
        }
        message = self.fake._user_message(query.user.id, query.user, None, None, paid)
        self.payments.append(StarPayment(charge_id, query.user, query.payload, amount, message))
        self.transactions.append(
            {
                "id": charge_id,
                "amount": amount,
                "date": int(time.time()),
                "source": self._partner(query.user, query.payload),
            }
        )

    @staticmethod
    def _partner(user: User, payload: str) -> JSON:
        return {
            "type": "user",
            "transaction_type": "invoice_payment",
            "user": user.to_dict(),
            "invoice_payload": payload,
        }
