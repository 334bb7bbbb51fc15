"""`.env.example` and the Docker image agree.

Loaded the way `docker run --env-file` loads it, the file leaves every setting at its default and
the image's own settings (the /data paths, the ops server on :8080) in force: the image's command
starts with it and the image's HEALTHCHECK passes. No Docker daemon is needed: the command runs
on this machine, with the image's environment, its volume mapped to a temporary folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bots.discord.settings import DiscordSettings
from bots.serve_api import ServeApiSettings
from bots.telegram.settings import TelegramSettings
from core.settings import EnvSettings, Settings
from tests.fake_telegram import FakeTelegram
from tests.test_operations import free_port, read_until

ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
ALL_SETTINGS: list[type[EnvSettings]] = [
    Settings,
    TelegramSettings,
    DiscordSettings,
    ServeApiSettings,
]


def docker_env_file(text: str, host: Mapping[str, str]) -> dict[str, str]:
    """What `docker run --env-file` makes of `text`, as docker/cli's opts/envfile.go reads it:
    leading white space trimmed, empty and `#` lines skipped, no quotes processing,
    `KEY=` an empty value, `KEY` alone the host's value (or nothing when the host has none)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = (raw.removeprefix("\ufeff") if number == 1 else raw).lstrip()
        if not line or line.startswith("#"):
            continue
        name, has_value, value = line.partition("=")
        name = name.lstrip()
        if not name or any(char.isspace() for char in name):
            raise ValueError(f"line {number}: docker refuses the variable name {name!r}")
        if has_value:
            values[name] = value
        elif name in host:
            values[name] = host[name]
    return values


@dataclass
class ImageSpec:
    """What the last stage of a Dockerfile sets for the container it runs."""

    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    exposed: list[int] = field(default_factory=list)


def read_dockerfile(text: str) -> ImageSpec:
    """The instructions of the final stage that shape the container (exec forms only)."""
    instructions: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instructions.append(pending + line)
        pending = ""
    spec = ImageSpec()
    for instruction in instructions:
        keyword, _, rest = instruction.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            spec = ImageSpec()
        elif keyword == "ENV":
            spec.env.update(item.split("=", 1) for item in shlex.split(rest))  # type: ignore[misc]
        elif keyword == "WORKDIR":
            spec.workdir = rest
        elif keyword == "ENTRYPOINT":
            spec.entrypoint = json.loads(rest)
        elif keyword == "CMD":
            spec.cmd = json.loads(rest)
        elif keyword == "HEALTHCHECK":
            spec.healthcheck = json.loads(rest.split(" CMD ", 1)[1])
        elif keyword == "EXPOSE":
            spec.exposed = [int(port.split("/")[0]) for port in rest.split()]
    return spec


def setting_names() -> set[str]:
    return {group.env_name(name) for group in ALL_SETTINGS for name in group.model_fields}


def test_the_file_is_read_as_docker_reads_it() -> None:
    text = '\ufeff# comment\n  A=1\nB=\nC="quoted"  \nD\nE\n\nF=x=y\n'
    assert docker_env_file(text, host={"D": "from host"}) == {
        "A": "1",
        "B": "",
        "C": '"quoted"  ',
        "D": "from host",
        "F": "x=y",
    }
    with pytest.raises(ValueError):
        docker_env_file("MY VAR=1\n", host={})


def test_env_example_leaves_every_setting_at_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    values = docker_env_file(ENV_EXAMPLE.read_text(), host={})
    assert set(values) <= setting_names(), "unknown names in .env.example"
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)
    defaults = [group.load().model_dump() for group in ALL_SETTINGS]
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    assert [group.load().model_dump() for group in ALL_SETTINGS] == defaults


async def test_the_image_starts_with_env_example_and_its_healthcheck_passes(
    tmp_path: Path,
) -> None:
    image = read_dockerfile(DOCKERFILE.read_text())
    assert image.entrypoint and image.healthcheck and image.exposed
    volume = tmp_path / "volume"  # the image's WORKDIR and VOLUME
    volume.mkdir()
    port = free_port()

    def here(value: str) -> str:
        """An image value on this machine: its volume here, its port a free one."""
        if value == image.workdir or value.startswith(image.workdir + "/"):
            value = str(volume) + value.removeprefix(image.workdir)
        for exposed in image.exposed:
            value = value.replace(f":{exposed}", f":{port}")
        return value

    binaries = str(Path(sys.executable).parent)
    async with FakeTelegram() as tg:
        env = {"PATH": f"{binaries}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(volume)}
        env |= {name: here(value) for name, value in image.env.items()}
        env |= docker_env_file(ENV_EXAMPLE.read_text(), host=os.environ)
        env |= {  # docker run -e ..., the one thing an operator must add: a bot
            "TELEGRAM_BOT_TOKEN": tg.token,
            "TELEGRAM_API_BASE_URL": tg.base_url,
            "TELEGRAM_FILE_BASE_URL": tg.base_file_url,
        }
        for name, value in image.env.items():
            assert env[name] == here(value), f".env.example overrides the image's {name}={value}"

        command = [*image.entrypoint, *image.cmd]
        program = shutil.which(command[0], path=env["PATH"])
        assert program is not None, command
        process = await asyncio.create_subprocess_exec(
            program, *command[1:], cwd=volume, env=env, stderr=asyncio.subprocess.PIPE
        )
        assert process.stderr is not None
        lines: list[str] = []
        try:
            await read_until(process.stderr, "running telegram with the local backend", lines)
            check = [here(part) for part in image.healthcheck]
            checker = shutil.which(check[0], path=env["PATH"])
            assert checker is not None, check
            probe = await asyncio.create_subprocess_exec(checker, *check[1:], cwd=volume, env=env)
            async with asyncio.timeout(30):
                assert await probe.wait() == 0, "".join(lines)
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60):
                await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0
    assert (volume / "retouch.db").is_file()  # the store where the image keeps it
