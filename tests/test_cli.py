"""The `retouch-bot` command as a user runs it: real processes, real files, the local engine."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from core.formats import sniff_format


def run_cli(
    *args: str, cwd: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_API_KEY"))}
    env["RETOUCH_BACKEND"] = "local"
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "bots.cli", *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_retouch_writes_a_valid_image(tmp_path: Path, portrait_bytes: bytes) -> None:
    source = tmp_path / "me.jpg"
    source.write_bytes(portrait_bytes)
    done = run_cli("retouch", str(source), "--fidelity", "0.3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = (tmp_path / "me-retouched.jpg").read_bytes()
    assert sniff_format(result) == "jpeg"
    with Image.open(io.BytesIO(result)) as image:
        assert image.size == (512, 512)
    assert "me-retouched.jpg" in done.stdout and "fidelity 0.3" in done.stdout
    assert re.search(r"1 face: \d+x\d+ at \(\d+,\d+\)", done.stdout)
    assert done.stderr == ""  # no notice of the model runtime, no engine line repeating ours


def test_explicit_output_file(tmp_path: Path, portrait_bytes: bytes) -> None:
    (tmp_path / "in.jpg").write_bytes(portrait_bytes)
    done = run_cli("retouch", "in.jpg", "-o", "out/result.jpg", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sniff_format((tmp_path / "out" / "result.jpg").read_bytes()) == "jpeg"


def test_the_output_is_the_file_asked_for(tmp_path: Path, portrait_bytes: bytes) -> None:
    (tmp_path / "in.jpg").write_bytes(portrait_bytes)
    done = run_cli("retouch", "in.jpg", "-o", "out.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sniff_format((tmp_path / "out.png").read_bytes()) == "png"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix) == ["in.jpg", "out.png"]
    assert re.fullmatch(r"1 done, 0 failed, 0 skipped in \d+\.\d\d s", done.stdout.splitlines()[-1])


def test_a_batch_never_loses_a_file(tmp_path: Path, portrait_bytes: bytes) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "photo.jpg").write_bytes(portrait_bytes)
    refused = run_cli("retouch", "a/photo.jpg", "b/photo.jpg", "-o", "x.jpg", cwd=tmp_path)
    assert refused.returncode == 2 and not (tmp_path / "x.jpg").exists()
    assert refused.stderr.startswith("retouch-bot: -o x.jpg names one file, but there are 2 inputs")
    merged = run_cli("retouch", "a", "b", "-o", "merged", cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("merged/**/*.jpg")) == [
        "merged/a/photo.jpg",
        "merged/b/photo.jpg",
    ]
    for _ in range(2):
        again = run_cli("retouch", "a", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "photo-retouched.jpg",
        "photo.jpg",
    ]
    assert again.stdout.splitlines()[-1].startswith("1 done, 0 failed, 1 skipped in ")


def test_folder_keeps_going_past_a_bad_file(
    tmp_path: Path, portrait_bytes: bytes, no_face_bytes: bytes
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(portrait_bytes)
    (photos / "b.png").write_bytes(b"this is not an image at all")
    (photos / "c.jpg").write_bytes(no_face_bytes)
    (photos / "d.jpg").write_bytes(portrait_bytes)
    done = run_cli("retouch", "photos", "-o", "out", cwd=tmp_path)
    assert done.returncode == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "d.jpg"]
    errors = [line for line in done.stderr.splitlines() if line.startswith("photos/")]
    assert len(errors) == 2
    assert any(line.startswith("photos/b.png: ") and "not an image" in line for line in errors)
    assert any(line.startswith("photos/c.jpg: ") and "face" in line.lower() for line in errors)
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("retouch", "missing.jpg"), "missing.jpg: no such file or folder"),
        (("retouch", "bad.jpg"), "bad.jpg: "),
        (("retouch", "bad.jpg", "--fidelity", "7"), "out of range"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"GIF89a-but-not-really")
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MAX_CONCURRENT_JOBS=many\n")
    done = run_cli("retouch", "x.jpg", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "retouch-bot: configuration error: MAX_CONCURRENT_JOBS: Input should be a valid integer,"
        " unable to parse string as an integer (got 'many')"
    ]


def test_demo_writes_result_and_before_after(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parent.parent / "examples" / "portrait.jpg"
    done = run_cli("demo", str(sample), "--out-dir", "demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = tmp_path / "demo" / "portrait-retouched.jpg"
    sheet = tmp_path / "demo" / "portrait-before-after.png"
    assert str(result) in done.stdout or "demo/portrait-retouched.jpg" in done.stdout
    with Image.open(sheet) as image:
        assert image.width == 1024 and image.height > 512
    assert sniff_format(result.read_bytes()) == "jpeg"
    assert "time:" in done.stdout
    assert re.search(r"faces: +1 face: \d+x\d+ at \(\d+,\d+\)", done.stdout)


def test_quota_grant_show_and_jobs(tmp_path: Path) -> None:
    granted = run_cli("quota", "grant", "telegram:42", "3", cwd=tmp_path)
    assert granted.returncode == 0, granted.stderr
    assert granted.stdout.strip() == "telegram:42 now has 3 extra credits"
    shown = run_cli("quota", "show", "telegram:42", cwd=tmp_path)
    assert "used:     0 of 20 today" in shown.stdout
    assert "credits:  3" in shown.stdout and "resets:" in shown.stdout
    assert run_cli("jobs", cwd=tmp_path).stdout.strip() == "no jobs"


def test_jobs_lists_stored_jobs(tmp_path: Path) -> None:
    import asyncio

    from core.jobs import NewJob
    from core.store.sqlite import SqliteStore

    async def add_job() -> str:
        store = await SqliteStore.open(tmp_path / "data" / "retouch.db")
        job = await store.reserve(
            NewJob("discord", "7", "c1", {}, {"url": "x"}, 0.3),
            day="2026-11-27",
            user_limit=5,
            chat_limit=None,
        )
        await store.close()
        return job.id

    job_id = asyncio.run(add_job())
    listed = run_cli("jobs", "--user", "discord:7", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    line = listed.stdout.splitlines()[1]
    assert line.startswith(job_id) and "queued" in line and "discord:7" in line


@pytest.mark.parametrize(
    "args",
    [
        ("quota", "show", "tg:1"),
        ("quota", "grant", "telegram:@alice", "5"),
        ("quota", "grant", "telegram: 123", "5"),
        ("quota", "grant", "telegram:0123", "5"),
        ("jobs", "--user", "discord:-5"),
    ],
)
def test_bad_user_argument(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"retouch-bot: {args[2]!r} is not a user; write it as "
        "telegram:123 or discord:456 (the numeric id)"
    )
    assert not (tmp_path / "data").exists()  # refused before the store is touched


def test_run_and_doctor_agree_when_no_bot_is_configured(tmp_path: Path) -> None:
    ran, checked = run_cli("run", cwd=tmp_path), run_cli("doctor", cwd=tmp_path)
    assert (ran.returncode, checked.returncode) == (2, 2)
    fix = "set TELEGRAM_BOT_TOKEN and/or DISCORD_BOT_TOKEN"
    assert ran.stderr.strip() == f"retouch-bot: no bot configured: {fix}"
    assert f"[warn] bots: none configured — fix: {fix}\n" in checked.stdout
    assert "[ ok ] configuration: RETOUCH_BACKEND=local: the local engine\n" in checked.stdout


def test_version_is_the_projects(tmp_path: Path) -> None:
    import tomllib

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    expected = tomllib.loads(pyproject.read_text())["project"]["version"]
    done = run_cli("--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"retouch-bot {expected}\n")


def test_demo_needs_no_file_and_no_repository(tmp_path: Path) -> None:
    done = run_cli("demo", cwd=tmp_path)  # a folder with nothing in it
    assert done.returncode == 0, done.stderr
    assert "input:        the sample portrait (Eileen Collins, NASA, public domain)" in done.stdout
    assert sniff_format((tmp_path / "demo-output" / "portrait-retouched.jpg").read_bytes())
    assert (tmp_path / "demo-output" / "portrait-before-after.png").is_file()


def test_the_sample_portrait_ships_in_the_package() -> None:
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = config["package-data"]["bots"]
    assert any(fnmatch.fnmatch("samples/portrait.jpg", pattern) for pattern in shipped)
    assert any(fnmatch.fnmatch("samples/README.md", pattern) for pattern in shipped)
    assert (root / "examples" / "portrait.jpg").resolve() == root / "bots/samples/portrait.jpg"


@pytest.mark.parametrize("command", ["run", "telegram", "discord"])
def test_a_bot_whose_store_fails_says_so_in_one_line(tmp_path: Path, command: str) -> None:
    (tmp_path / "bad.db").write_text("this is not a database")
    env = {
        "DATABASE_PATH": "bad.db",
        "TELEGRAM_BOT_TOKEN": "123456:test-token-never-sent-anywhere",
        "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/bot",
        "DISCORD_BOT_TOKEN": "discord-token-never-sent-anywhere",
        "DISCORD_API_BASE_URL": "http://127.0.0.1:9/api/v10",
    }
    done = run_cli(command, cwd=tmp_path, extra_env=env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [lines[0]] and "Traceback" not in done.stderr
    assert "not a SQLite database" in lines[0] and "DATABASE_PATH" in lines[0]
    assert "token" not in done.stderr.lower()


def test_quota_show_tells_the_reset_in_the_quota_zone(tmp_path: Path) -> None:
    done = run_cli(
        "quota", "show", "telegram:42", cwd=tmp_path, extra_env={"QUOTA_TIMEZONE": "Asia/Shanghai"}
    )
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("resets:")]
    assert re.fullmatch(
        r"resets:   \d{4}-\d\d-\d\d 00:00 Asia/Shanghai \(in \d+ h \d+ min\)", line
    ) or (re.fullmatch(r"resets:   \d{4}-\d\d-\d\d 00:00 Asia/Shanghai \(in \d+ min\)", line))
