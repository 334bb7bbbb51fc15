"""serve-api's own settings (`SERVE_API_*`), read like the core's from the environment and `.env`.

They are declared here, beside the server, so the core's settings know nothing of it; the image
limits and timeouts it shares with the bots stay in `core.settings.Settings`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from core.settings import EnvSettings, split_csv


class ServeApiSettings(EnvSettings):
    """Where serve-api listens, who may call it, how long results live, how much work it takes."""

    serve_api_host: str = "127.0.0.1"
    serve_api_port: int = Field(8000, ge=0, le=65535)
    serve_api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    serve_api_public_url: str = ""
    serve_api_result_ttl_seconds: int = Field(3600, gt=0)
    serve_api_results_dir: Path = Path("data/serve-api-results")
    serve_api_workers: int = Field(0, ge=0)
    serve_api_queue_size: int = Field(16, ge=1)
    serve_api_allow_private_urls: bool = False
    serve_api_body_budget_bytes: int = Field(300_000_000, gt=0)
    serve_api_header_timeout_seconds: float = Field(10.0, gt=0)
    serve_api_body_idle_seconds: float = Field(10.0, gt=0)
    serve_api_body_timeout_seconds: float = Field(120.0, gt=0)

    @field_validator("serve_api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: Any) -> Any:
        return split_csv(value)

    @property
    def serve_api_worker_count(self) -> int:
        """Jobs retouched at once: the setting, else one per CPU core."""
        return self.serve_api_workers or max(1, os.cpu_count() or 1)
