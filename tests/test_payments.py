"""Stars packs and the payments ledger (`core.packs`, `core.payments`), on the SQLite store;
the store's own guarantees (once per charge id, under concurrency, on both databases) are in
`tests/test_store.py`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.errors import ConfigError, CreditsSpentError
from core.packs import Pack, parse_packs
from core.payments import Payment, Payments, RefundRefusedError
from core.quota import QuotaPolicy
from core.settings import load_settings
from core.store import Purchase, Usage
from core.store.sqlite import SqliteStore

T0 = 1_800_000_000.0
DAY = "2027-01-15"


@pytest.fixture
async def payments(tmp_path: Path) -> AsyncIterator[Payments]:
    store = await SqliteStore.open(tmp_path / "retouch.db", clock=lambda: T0)
    yield Payments(store, QuotaPolicy(5), [Pack(10, 50), Pack(50, 200)], clock=lambda: T0)
    await store.close()


def paid(charge: str = "ch-1", payload: str = "credits:10:50", amount: int = 50) -> Payment:
    return Payment("telegram", charge, "1001", payload, "XTR", amount, "prov-1")


def test_packs_are_read_from_the_setting() -> None:
    assert parse_packs(" 50:200, 10:50 ,") == [Pack(10, 50), Pack(50, 200)]
    assert parse_packs("") == []
    for bad in ("10", "10:x", "0:5", "10:0", "10:5,10:6", "１０:5", ",".join(["1:1"] * 7)):
        with pytest.raises(ValueError):
            parse_packs(bad)
    settings = load_settings(payments_stars_packs="10:50", payments_support="@help")
    assert settings.payments_stars_packs == [Pack(10, 50)]
    with pytest.raises(ConfigError, match="PAYMENTS_STARS_PACKS: '10:x' is not photos:stars"):
        load_settings(payments_stars_packs="10:x", payments_support="@help")
    with pytest.raises(ConfigError, match="PAYMENTS_SUPPORT: must be set"):
        load_settings(payments_stars_packs="10:50")


def test_an_invoice_payload_names_its_pack() -> None:
    assert Pack(10, 50).payload == "credits:10:50"
    assert Pack.from_payload("credits:10:50") == Pack(10, 50)
    for other in ("credits:0:50", "credits:10", "gift:1:1", "credits:10:50:x", ""):
        assert Pack.from_payload(other) is None


def test_only_a_pack_on_sale_at_its_price_passes_the_pre_checkout(payments: Payments) -> None:
    assert payments.refusal("credits:10:50", "XTR", 50) is None
    assert payments.refusal("credits:10:40", "XTR", 40) == "offer_gone"  # price changed
    assert payments.refusal("credits:10:50", "XTR", 49) == "offer_gone"
    assert payments.refusal("credits:10:50", "USD", 50) == "offer_gone"
    assert payments.refusal("credits:20:50", "XTR", 50) == "offer_gone"
    assert payments.refusal("nonsense", "XTR", 50) == "offer_gone"


async def test_a_payment_adds_its_pack_once(payments: Payments) -> None:
    first = await payments.record(paid())
    assert first == Purchase(
        "telegram", "ch-1", "1001", 10, 50, "XTR", "credits:10:50", DAY, T0, "paid", "prov-1"
    )
    assert await payments.record(paid()) is None
    assert await payments.record(paid("ch-2", payload="gift")) is None
    assert await payments.store.usage("telegram", "1001", DAY) == Usage(credits=10)


async def test_a_refund_pays_back_and_takes_the_credits(payments: Payments) -> None:
    await payments.record(paid())
    refunded: list[str] = []

    async def pay_back(purchase: Purchase) -> None:
        refunded.append(purchase.charge_id)

    done = await payments.refund("telegram", "ch-1", pay_back)
    assert done.state == "refunded" and refunded == ["ch-1"]
    assert await payments.store.usage("telegram", "1001", DAY) == Usage(credits=0)


async def test_a_refused_refund_gives_the_credits_back(payments: Payments) -> None:
    await payments.record(paid())

    async def refuse(purchase: Purchase) -> None:
        raise RefundRefusedError("CHARGE_NOT_FOUND")

    with pytest.raises(RefundRefusedError):
        await payments.refund("telegram", "ch-1", refuse)
    purchase = await payments.store.get_purchase("telegram", "ch-1")
    assert purchase is not None and purchase.state == "paid"
    assert await payments.store.usage("telegram", "1001", DAY) == Usage(credits=10)


async def test_a_refund_cut_off_midway_is_finished_by_running_it_again(
    payments: Payments,
) -> None:
    await payments.record(paid())

    async def lost(purchase: Purchase) -> None:
        raise TimeoutError  # did the platform refund? unknown

    with pytest.raises(TimeoutError):
        await payments.refund("telegram", "ch-1", lost)
    purchase = await payments.store.get_purchase("telegram", "ch-1")
    assert purchase is not None and purchase.state == "refunding"
    assert await payments.store.usage("telegram", "1001", DAY) == Usage(credits=0)

    async def already(purchase: Purchase) -> None:
        return None  # the platform: already refunded

    assert (await payments.refund("telegram", "ch-1", already)).state == "refunded"
    assert await payments.store.usage("telegram", "1001", DAY) == Usage(credits=0)


async def test_spent_credits_are_not_refunded(payments: Payments) -> None:
    await payments.record(paid())
    await payments.store.grant("telegram", "1001", -3)

    async def pay_back(purchase: Purchase) -> None:
        raise AssertionError("the platform must not be asked")

    with pytest.raises(CreditsSpentError):
        await payments.refund("telegram", "ch-1", pay_back)
    assert await payments.store.usage("telegram", "1001", DAY) == Usage(credits=7)
