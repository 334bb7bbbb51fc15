"""Settings: the documented names and defaults, `.env` files, and one clear line per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots.discord.settings import DiscordSettings
from bots.telegram.settings import TelegramSettings
from core.errors import ConfigError
from core.settings import EnvSettings, Settings, load_settings

ALL_SETTINGS: list[type[EnvSettings]] = [Settings, TelegramSettings, DiscordSettings]


def test_defaults_match_the_design() -> None:
    s = load_settings()
    assert s.retouch_api_base_url == "https://api.xty.app/v1"
    assert s.retouch_backend == "auto" and s.effective_backend == "local"
    assert s.retouch_default_fidelity == 0.1
    telegram = TelegramSettings.load()
    assert telegram.api_base_url == "https://api.telegram.org/bot"
    assert telegram.file_base_url == "https://api.telegram.org/file/bot"
    assert telegram.bot_token.get_secret_value() == ""
    assert DiscordSettings.load().bot_token.get_secret_value() == ""
    assert s.database_path == Path("data/retouch.db")
    assert s.quota_per_user_per_day == 20
    assert s.max_concurrent_jobs == 8
    assert s.admin_ids == []


def test_environment_and_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETOUCH_API_KEY", "sk-test-secret-value")
    monkeypatch.setenv("ADMIN_IDS", "telegram:123, discord:456")
    s = load_settings()
    assert s.effective_backend == "api"
    assert s.admin_ids == ["telegram:123", "discord:456"]
    assert "sk-test-secret-value" not in repr(s)


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "QUOTA_PER_USER_PER_DAY=5\nRETOUCH_BACKEND=local\n"
        "TELEGRAM_ALL_PHOTOS_CHATS=-100500, 42\nDISCORD_GUILD_IDS=7\n"
    )
    s = load_settings()
    assert s.quota_per_user_per_day == 5 and s.effective_backend == "local"
    assert TelegramSettings.load().all_photos_chats == [-100500, 42]
    assert DiscordSettings.load().guild_ids == [7]


def test_platform_settings_live_beside_their_adapters(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not [name for name in Settings.model_fields if name.startswith(("telegram", "discord"))]
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:platform-token-value")
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "auto")
    telegram = TelegramSettings.load()
    assert telegram.bot_token.get_secret_value() == "123456:platform-token-value"
    assert "platform-token-value" not in repr(telegram)
    assert telegram.secret_token == TelegramSettings.load().secret_token  # replicas agree
    assert DiscordSettings.load().shard_count == "auto"
    with pytest.raises(TypeError):
        Settings.load(telegram_bot_token="a setting the core no longer has")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("QUOTA_PER_USER_PER_DAY", "lots", "QUOTA_PER_USER_PER_DAY: "),
        ("RETOUCH_DEFAULT_FIDELITY", "1.5", "RETOUCH_DEFAULT_FIDELITY: "),
        ("RETOUCH_BACKEND", "cloud", "RETOUCH_BACKEND: "),
        ("ADMIN_IDS", "tg:1", "ADMIN_IDS: 'tg:1' is not platform:id"),
        ("RETOUCH_API_BASE_URL", "api.example", "RETOUCH_API_BASE_URL: must start with http"),
        ("MAX_CONCURRENT_JOBS", "0", "MAX_CONCURRENT_JOBS: "),
        ("OPS_LISTEN", "everywhere", "OPS_LISTEN: must be host:port"),
        ("TELEGRAM_ALBUM_WAIT_SECONDS", "99", "TELEGRAM_ALBUM_WAIT_SECONDS: "),
        ("TELEGRAM_API_BASE_URL", "ftp://x", "TELEGRAM_API_BASE_URL: must start with http"),
        ("TELEGRAM_WEBHOOK_LISTEN", "8443", "TELEGRAM_WEBHOOK_LISTEN: must be host:port"),
        ("TELEGRAM_ALL_PHOTOS_CHATS", "-1,x", "TELEGRAM_ALL_PHOTOS_CHATS: "),
        ("DISCORD_SHARD_COUNT", "many", "DISCORD_SHARD_COUNT: must be empty, auto, or a number"),
        ("DISCORD_SHARD_IDS", "0", "DISCORD_SHARD_IDS: needs DISCORD_SHARD_COUNT"),
    ],
)
def test_bad_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        for settings in ALL_SETTINGS:
            settings.load()
    message = str(caught.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_api_backend_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETOUCH_BACKEND", "api")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == "RETOUCH_API_KEY: must be set when RETOUCH_BACKEND=api"


def missing_from_env_example(*classes: type[EnvSettings]) -> set[str]:
    """The environment names of `classes` that `.env.example` does not list."""
    example = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    names = {
        line.split("=", 1)[0].lstrip("# ").strip() for line in example.splitlines() if "=" in line
    }
    every = {group.env_name(name) for group in classes for name in group.model_fields}
    return every - names


def test_env_example_lists_every_setting() -> None:
    missing = missing_from_env_example(*ALL_SETTINGS)
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_store_and_replica_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.database_pool_size, s.replica_id) == (10, "")
    assert (s.jobs_heartbeat_seconds, s.jobs_stale_after_seconds) == (10.0, 60.0)
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://bot:pw@db/retouch")
    assert load_settings().database_url.get_secret_value().startswith("postgresql+asyncpg://")
    monkeypatch.setenv("DATABASE_URL", "mysql://bot:pw@db/retouch")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == "DATABASE_URL: must be empty or a postgresql:// URL"
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("JOBS_HEARTBEAT_SECONDS", "30")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith("JOBS_STALE_AFTER_SECONDS: must be more than twice")
