"""Albums end to end: the real bot (python-telegram-bot) against the fake Bot API.

An album is one job per photo, and its results go back as one album; parts that were refused
are answered at once, and parts waiting for their siblings hold no worker.
"""

from __future__ import annotations

import asyncio

import pytest

from bots.telegram.albums import OutgoingAlbums, album_chunks
from tests.fake_telegram import User
from tests.test_telegram_bot import ALICE, GROUP, Harness, bot, upstream_fidelities
from tests.upstream_fakes import ErrorJson, Gate

__all__ = ["bot"]  # the fixture, shared with the other Telegram tests

ROOT_USER = User(9999, "Root", username="root", language_code="en")
"""The harness's admin: no in-flight limit."""


async def test_an_album_larger_than_the_in_flight_limit_sends_what_was_admitted_at_once(
    bot: Harness, portrait_bytes: bytes
) -> None:
    await bot.start(quota_max_in_flight_per_user=2)
    parts = bot.tg.send_album(ALICE.id, ALICE, [portrait_bytes] * 4, caption="0.3")

    [call] = await bot.tg.wait_for("sendMediaGroup", answered=True)
    assert len(call.params["media"]) == 2
    # One answer for the refused parts, to the first of them; nothing is charged for them.
    [refusal] = [m for m in bot.tg.sent_to(ALICE.id) if m.text and "in progress" in m.text]
    assert refusal.reply_to_message_id == parts[2]["message_id"]
    assert upstream_fidelities(bot.upstream) == [0.3, 0.3]
    status = bot.tg.sent_to(ALICE.id)[0]
    await bot.tg.wait_until(lambda: status.deleted)  # done and committed
    bot.tg.send_text(ALICE.id, ALICE, "/quota")
    await bot.text_containing(ALICE.id, "used 2 of")
    assert bot.tg.calls_to("sendPhoto") == []


async def test_after_a_restart_an_album_still_goes_out_without_its_refused_photos(
    bot: Harness, portrait_bytes: bytes
) -> None:
    gate = Gate()
    bot.upstream.script(gate)  # the first photo is held upstream; the second is done at once
    await bot.start(quota_max_in_flight_per_user=2)
    bot.tg.send_album(ALICE.id, ALICE, [portrait_bytes] * 4)
    await bot.text_containing(ALICE.id, "in progress")
    await gate.wait_entered()
    await bot.tg.wait_until(lambda: len(bot.upstream.calls) == 2)

    await bot.halt()  # promptly: a photo waiting for its siblings is no upload under way
    await bot.start()

    [call] = await bot.tg.wait_for("sendMediaGroup", answered=True)
    assert len(call.params["media"]) == 2
    assert bot.tg.calls_to("sendPhoto") == []
    bot.tg.send_text(ALICE.id, ALICE, "/quota")
    await bot.text_containing(ALICE.id, "used 2 of")


async def test_an_album_larger_than_the_worker_pool_does_not_block_it(
    bot: Harness, portrait_bytes: bytes
) -> None:
    await bot.start(max_concurrent_jobs=2)
    bot.tg.send_album(ROOT_USER.id, ROOT_USER, [portrait_bytes] * 5)

    [call] = await bot.tg.wait_for("sendMediaGroup", answered=True)
    assert len(call.params["media"]) == 5
    assert len(bot.upstream.calls) == 5
    assert bot.tg.calls_to("sendPhoto") == []


async def test_every_photo_of_a_captioned_album_in_a_group_is_a_job(
    bot: Harness, portrait_bytes: bytes
) -> None:
    await bot.start()
    parts = bot.tg.send_album(GROUP, ALICE, [portrait_bytes] * 3, caption="/retouch 0.5")

    [call] = await bot.tg.wait_for("sendMediaGroup", answered=True)
    assert len(call.params["media"]) == 3
    assert upstream_fidelities(bot.upstream) == [0.5, 0.5, 0.5]
    results = [m for m in bot.tg.sent_to(GROUP) if m.kind == "photo"]
    assert {m.reply_to_message_id for m in results} <= {p["message_id"] for p in parts}


async def test_the_rest_of_an_album_whose_photo_failed_still_comes_back_as_one(
    bot: Harness, portrait_bytes: bytes
) -> None:
    await bot.start()
    bot.upstream.script(ErrorJson(400, "no face detected", code="no_face"))
    bot.tg.send_album(ALICE.id, ALICE, [portrait_bytes] * 3)

    [call] = await bot.tg.wait_for("sendMediaGroup", answered=True)
    assert len(call.params["media"]) == 2
    await bot.text_containing(ALICE.id, "face")
    assert bot.tg.calls_to("sendPhoto") == []


async def test_an_album_nobody_addressed_in_a_group_passes_in_silence(
    bot: Harness, portrait_bytes: bytes
) -> None:
    await bot.start()
    bot.tg.send_album(GROUP, ALICE, [portrait_bytes] * 3, caption="our trip")
    bot.tg.send_photo(GROUP, ALICE, portrait_bytes, caption="/retouch")

    await bot.result_for(GROUP)
    assert len(bot.upstream.calls) == 1
    assert bot.tg.calls_to("sendMediaGroup") == []


# --- the outgoing side on its own -------------------------------------------------------


class Sender:
    """Records each album sent (its photos' indices); can fail the album number `fail_at`."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.albums: list[list[int]] = []
        self.fail_at = fail_at

    async def __call__(self, results: dict[int, bytes]) -> None:
        if len(self.albums) == self.fail_at:
            self.fail_at = None
            raise OSError("the upload broke off")
        assert all(results[index] == b"%d" % index for index in results)
        self.albums.append(list(results))


@pytest.mark.parametrize(
    ("photos", "sizes"),
    [(0, []), (1, []), (2, [2]), (10, [10]), (11, [6, 5]), (20, [10, 10]), (23, [8, 8, 7])],
)
def test_album_chunks_take_two_to_ten_photos(photos: int, sizes: list[int]) -> None:
    chunks = album_chunks(list(range(photos)))
    assert [len(chunk) for chunk in chunks] == sizes
    assert [index for chunk in chunks for index in chunk] == (list(range(photos)) if sizes else [])


async def test_a_large_album_goes_out_as_consecutive_albums() -> None:
    albums, send = OutgoingAlbums(), Sender()
    delivered = await asyncio.gather(
        *(albums.deliver("a", 23, index, b"%d" % index, send) for index in reversed(range(23)))
    )
    assert delivered == [True] * 23
    assert send.albums == [list(range(8)), list(range(8, 16)), list(range(16, 23))]


async def test_photos_that_will_not_come_leave_the_album() -> None:
    albums, send = OutgoingAlbums(), Sender()
    albums.leave("a", 5, 1)
    first = asyncio.create_task(albums.deliver("a", 5, 0, b"0", send))
    albums.leave("a", 5, 3)
    last = asyncio.create_task(albums.deliver("a", 5, 4, b"4", send))
    albums.leave("a", 5, 2)
    assert list(await asyncio.gather(first, last)) == [True, True]
    assert send.albums == [[0, 4]]
    # Once over, the album takes nothing more: a late photo goes alone.
    assert await albums.deliver("a", 5, 2, b"2", send) is False
    albums.leave("a", 5, 2)


async def test_an_album_left_with_one_photo_sends_it_alone() -> None:
    albums, send = OutgoingAlbums(), Sender()
    only = asyncio.create_task(albums.deliver("a", 3, 2, b"2", send))
    albums.leave("a", 3, 0)
    albums.leave("a", 3, 1)
    assert await only is False
    albums.leave("b", 2, 0)
    albums.leave("b", 2, 1)  # nothing came at all
    assert await albums.deliver("b", 2, 0, b"0", send) is False
    assert send.albums == []


async def test_photos_an_album_failed_to_send_go_alone_and_the_sent_ones_not_again() -> None:
    albums, send = OutgoingAlbums(), Sender(fail_at=1)
    delivered = await asyncio.gather(
        *(albums.deliver("a", 12, index, b"%d" % index, send) for index in range(12))
    )
    assert send.albums == [list(range(6))]
    assert delivered == [True] * 6 + [False] * 6


async def test_the_oldest_open_album_makes_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bots.telegram.albums.OPEN_REMEMBERED", 2)
    albums, send = OutgoingAlbums(), Sender()
    albums.open("a", 2)  # its photos taken over by another replica: never completed here
    albums.open("b", 2)
    albums.open("c", 2)  # "a", the oldest, is closed to make room
    assert await albums.deliver("a", 2, 0, b"0", send) is False
    both = await asyncio.gather(*(albums.deliver("b", 2, i, b"%d" % i, send) for i in (0, 1)))
    assert list(both) == [True, True] and send.albums == [[0, 1]]
