"""Which setting wins (`core.preferences`), and the service applying a group's own settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ChatQuotaExceededError, FidelityError
from core.preferences import (
    language_code,
    pick_auto_retouch,
    pick_fidelity,
    pick_language,
)
from core.service import RetouchService
from core.store import ChatSettings, UserSettings
from core.store.sqlite import SqliteStore
from tests.service_fakes import EchoBackend, RecordingHooks, no_sleep, request_for, service_settings

GROUP = ChatSettings(default_fidelity=0.5, locale="zh", auto_retouch=True)


def test_a_persons_own_choice_beats_the_groups_which_beats_the_default() -> None:
    assert pick_fidelity(0.7, UserSettings(0.3), GROUP, 0.1) == 0.7
    assert pick_fidelity(None, UserSettings(0.3), GROUP, 0.1) == 0.3
    assert pick_fidelity(None, UserSettings(), GROUP, 0.1) == 0.5
    assert pick_fidelity(None, UserSettings(), ChatSettings(), 0.1) == 0.1
    assert pick_fidelity(None, UserSettings(), None, 0.1) == 0.1
    with pytest.raises(FidelityError):
        pick_fidelity(2.0, UserSettings(), None, 0.1)


def test_language_the_users_then_the_chats_then_the_clients() -> None:
    assert pick_language(UserSettings(locale="en"), GROUP, "zh-hans") == "en"
    assert pick_language(UserSettings(), GROUP, "en-US") == "zh"
    assert pick_language(UserSettings(), None, "zh-TW") == "zh"
    assert pick_language(UserSettings(), ChatSettings(), None) == "en"
    assert [language_code(c) for c in ("zh-hans", "ZH", "en", "de", None)] == [
        "zh",
        "zh",
        "en",
        "en",
        "en",
    ]


def test_auto_retouch_the_chats_choice_else_the_operators() -> None:
    assert pick_auto_retouch(GROUP, configured=False) is True
    assert pick_auto_retouch(ChatSettings(auto_retouch=False), configured=True) is False
    assert pick_auto_retouch(ChatSettings(), configured=True) is True
    assert pick_auto_retouch(None, configured=False) is False


async def test_a_group_job_takes_the_groups_fidelity_and_limit(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    settings = service_settings(tmp_path, retouch_default_fidelity=0.2)
    store = await SqliteStore.open(settings.database_path)
    service = RetouchService(settings, store, EchoBackend(), sleep=no_sleep)
    hooks = RecordingHooks()
    service.register("telegram", hooks)
    await service.start()
    try:
        await service.set_chat_setting("telegram", "-100", "default_fidelity", 0.5)
        await service.set_chat_setting("telegram", "-100", "daily_limit", 2)
        in_group, _ = await service.submit(
            request_for("1", portrait_bytes, chat="-100", is_group=True)
        )
        private, _ = await service.submit(request_for("1", portrait_bytes))
        await service.set_default_fidelity("telegram", "2", 0.7)
        own, _ = await service.submit(request_for("2", portrait_bytes, chat="-100", is_group=True))
        assert (in_group.fidelity, private.fidelity, own.fidelity) == (0.5, 0.2, 0.7)
        with pytest.raises(ChatQuotaExceededError) as refused:
            await service.submit(request_for("3", portrait_bytes, chat="-100", is_group=True))
        assert refused.value.params["limit"] == 2 and refused.value.params["tz"] == "UTC"
        assert (await service.quota_status("telegram", "3")).used == 0
        await hooks.wait_for("done", 3)
        assert await service.preferences.language("telegram", "3", "-100", "en") == "en"
        await service.set_chat_setting("telegram", "-100", "locale", "zh")
        assert await service.preferences.language("telegram", "3", "-100", "en") == "zh"
        assert await service.preferences.language("telegram", "3", None, "en") == "en"
        await service.set_language("telegram", "3", "en")
        assert await service.preferences.language("telegram", "3", "-100", "zh") == "en"
    finally:
        await service.shutdown(grace=0)
        await store.close()
