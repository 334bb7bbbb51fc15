"""The `flood` benchmark: its floor, how the fakes pair results with photos, and a tiny real run."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks.fakes import Control
from benchmarks.flood import GROUP, Load, Options, arrivals, floor, main_async
from tests.fake_telegram import Call
from tests.fake_telegram_limits import TelegramLimits

LIMITS = dataclasses.asdict(TelegramLimits())


def test_the_issue_load_is_bound_by_the_group_at_17_seconds() -> None:
    bound = floor(Load(private_users=150, group_members=25, latency=2.0), LIMITS)
    # 25 results in a group whose bucket holds 20 and refills one every 3 s: 2 s + 5 x 3 s.
    assert bound["floor_s"] == 17.0
    assert bound["binding_budget"] == "group"
    # 175 results at 30 a second after a burst of 30: 145 / 30 s after L.
    assert bound["seconds_after_latency_by_budget"]["global"] == pytest.approx(4.833)


def test_without_a_group_the_global_budget_binds() -> None:
    bound = floor(Load(private_users=300, group_members=0, latency=1.0), LIMITS)
    assert bound["binding_budget"] == "global"
    assert bound["floor_s"] == 10.0  # 1 s + (300 - 30) / 30


def test_the_group_photos_arrive_spread_among_the_private_ones() -> None:
    photos = arrivals(Load(private_users=6, group_members=2, latency=1.0))
    chats = ["g" if photo.get("chat") == GROUP else "p" for photo in photos]
    assert "".join(chats) == "ppgpppgp"
    assert all(photo["caption"] == "/retouch" for photo in photos if "chat" in photo)
    assert len({photo["user"] for photo in photos}) == 8


def _result(chat: int, method: str = "sendPhoto", **params: Any) -> Call:
    call = Call(method, {"chat_id": chat, **params}, {}, "", {}, "POST", f"/{method}")
    call.status, call.response = 200, {"ok": True}
    return call


def test_results_answer_their_photo_by_reply_else_the_oldest_and_extras_are_duplicates() -> None:
    tg = SimpleNamespace(calls=[])
    control = Control(tg, SimpleNamespace(calls=[]), b"", document=False)  # type: ignore[arg-type]
    for chat, message in ((7, 1), (GROUP, 10), (GROUP, 11), (GROUP, 12)):
        control.add_job(chat, message)
    tg.calls += [
        _result(GROUP, reply_parameters={"message_id": 11}),
        _result(7),  # PTB quotes only in groups: the chat's oldest waiting photo
        _result(GROUP, "sendMediaGroup", media=[{}, {}]),  # items fill the rest, oldest first
        _result(7),  # nothing left to answer in the chat: a duplicate of its last photo
    ]
    assert control.result_count() == 4
    results = {(job.chat_id, job.message_id): job.results for job in control.window.jobs.values()}
    assert results == {(7, 1): 2, (GROUP, 10): 1, (GROUP, 11): 1, (GROUP, 12): 1}
    assert control.window.jobs[(GROUP, 12)].method == "sendMediaGroup"


@pytest.mark.timeout(240)  # two bots and their fakes start in turn, on a shared machine
async def test_a_tiny_flood_run_measures_both_bots() -> None:
    load = Load(private_users=3, group_members=2, latency=0.3)
    report = await main_async(load, Options(deadline=60, settle=0.5, quiet=False), ["ours", "peer"])
    assert report["floor"]["floor_s"] == 0.3  # five photos fit every budget's burst
    for name in ("ours", "peer"):
        figures = report["bots"][name]
        assert "error" not in figures, figures
        assert figures["answered"] == 5
        assert figures["every_photo_answered_exactly_once"], figures
        assert figures["seconds_until_all_answered"] >= 0.3
        assert figures["bot_api_calls_by_method"]["getFile"] == 5
        assert figures["bot_cpu_s"] > 0
        assert figures["noise"]["window_s"] >= figures["seconds_until_all_answered"]
    peer = report["bots"]["peer"]
    assert peer["bot_api_calls_by_method"]["sendPhoto"] == 5
    assert peer["messages_per_photo_in_group"] == 1.0  # the result, nothing else
    assert peer["too_many_requests"] == 0
    assert set(report["targets"]) >= {
        "flood_within_1.2x_floor",
        "flood_no_calls_inside_flood_wait",
        "flood_faster_than_peer",
    }
