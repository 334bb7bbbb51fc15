"""Settings: the documented names and defaults, `.env` files, and one clear line per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from core.errors import ConfigError
from core.settings import Settings, load_settings


def test_defaults_match_the_design() -> None:
    s = load_settings()
    assert s.retouch_api_base_url == "https://api.xty.app/v1"
    assert s.retouch_backend == "auto" and s.effective_backend == "local"
    assert s.retouch_default_fidelity == 0.1
    assert s.telegram_api_base_url == "https://api.telegram.org/bot"
    assert s.telegram_file_base_url == "https://api.telegram.org/file/bot"
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
    (tmp_path / ".env").write_text("QUOTA_PER_USER_PER_DAY=5\nRETOUCH_BACKEND=local\n")
    s = load_settings()
    assert s.quota_per_user_per_day == 5 and s.effective_backend == "local"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("QUOTA_PER_USER_PER_DAY", "lots", "QUOTA_PER_USER_PER_DAY: "),
        ("RETOUCH_DEFAULT_FIDELITY", "1.5", "RETOUCH_DEFAULT_FIDELITY: "),
        ("RETOUCH_BACKEND", "cloud", "RETOUCH_BACKEND: "),
        ("ADMIN_IDS", "tg:1", "ADMIN_IDS: 'tg:1' is not platform:id"),
        ("RETOUCH_API_BASE_URL", "api.example", "RETOUCH_API_BASE_URL: must start with http"),
        ("MAX_CONCURRENT_JOBS", "0", "MAX_CONCURRENT_JOBS: "),
    ],
)
def test_bad_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_api_backend_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETOUCH_BACKEND", "api")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == "RETOUCH_API_KEY: must be set when RETOUCH_BACKEND=api"


def missing_from_env_example(settings_class: type[BaseSettings]) -> set[str]:
    """The environment names of `settings_class` that `.env.example` does not list."""
    example = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    names = {
        line.split("=", 1)[0].lstrip("# ").strip() for line in example.splitlines() if "=" in line
    }
    return {name.upper() for name in settings_class.model_fields} - names


def test_env_example_lists_every_setting() -> None:
    missing = missing_from_env_example(Settings)
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
