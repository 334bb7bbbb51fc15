"""The Telegram `Target` reads and writes the `reply_target` JSON earlier versions stored."""

from __future__ import annotations

from typing import Any

import pytest

from bots.telegram.target import AlbumSlot, Target

# As the adapter before the `Target` type wrote them into job rows (which must still resume).
STORED: list[dict[str, Any]] = [
    {"chat_id": 1001, "message_id": 7, "thread_id": None, "status_id": 8, "lang": "en"},
    {"chat_id": -100500, "message_id": 9, "thread_id": 3, "status_id": None, "lang": "zh"},
    {
        "chat_id": 1001,
        "message_id": 12,
        "thread_id": None,
        "status_id": 13,
        "lang": "en",
        "album": {"id": "13911234", "size": 3, "index": 2},
    },
]


@pytest.mark.parametrize("stored", STORED)
def test_stored_json_round_trips(stored: dict[str, Any]) -> None:
    assert Target.from_json(stored).to_json() == stored


def test_fields_of_a_stored_album_job() -> None:
    target = Target.from_json(STORED[2])
    assert target.album == AlbumSlot("13911234", 3, 2)
    assert (target.chat_id, target.message_id, target.status_id) == (1001, 12, 13)
    where = target.where()
    assert where["chat_id"] == 1001 and where["message_thread_id"] is None
    assert where["reply_parameters"].message_id == 12
    assert where["reply_parameters"].allow_sending_without_reply


def test_an_unknown_language_reads_as_english() -> None:
    assert Target.from_json({**STORED[0], "lang": "fr"}).lang == "en"
    assert Target.from_json({"chat_id": "5", "message_id": "6"}).status_id is None
