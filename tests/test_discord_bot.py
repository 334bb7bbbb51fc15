"""The Discord bot end to end: the real `run_discord` and discord.py against the fake Discord.

The upstream is `FakeUpstream` (so the `ApiBackend` runs, and every request it got is on record);
tests wait on the fakes' recorded calls, never on the clock.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import discord
import numpy as np
import pytest
from PIL import Image

from bots.cli import main
from bots.discord.run import build_client, run_discord
from bots.discord.settings import DiscordSettings
from core.errors import ConfigError
from core.settings import Settings
from tests.fake_discord import (
    ATTACH_FILES,
    CALLBACK,
    DEFAULT_PERMISSIONS,
    EPHEMERAL,
    FOLLOWUP,
    GLOBAL_COMMANDS,
    Call,
    FakeDiscord,
)
from tests.fake_discord_limits import DiscordLimits
from tests.service_fakes import service_settings
from tests.upstream_fakes import Echo, FakeUpstream, Gate, Success, sample_jpeg

JSON = dict[str, Any]
API_KEY = "sk-test-upstream-key-123"


@asynccontextmanager
async def strict_discord(
    monkeypatch: pytest.MonkeyPatch, limits: DiscordLimits | None = None
) -> AsyncIterator[FakeDiscord]:
    """The fake Discord, patched in and checked when the test ends: no error on its side, no
    rule broken, no rate limit met (but injected ones)."""
    async with FakeDiscord(limits=limits) as server:
        server.patch(monkeypatch)
        yield server
        assert server.errors == []
        assert server.violations == []
        server.assert_limits_kept()


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    async with strict_discord(monkeypatch) as server:
        yield server


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(default=Echo(), api_key=API_KEY) as server:
        yield server


Config = tuple[Settings, DiscordSettings]


def settings_for(
    tmp_path: Path,
    fake: FakeDiscord,
    upstream: FakeUpstream,
    discord_settings: dict[str, Any] | None = None,
    **overrides: Any,
) -> Config:
    """The bot on the fake Discord, with the API backend on the fake upstream.

    `overrides` are core settings, `discord_settings` the `DISCORD_*` ones.
    """
    values: dict[str, Any] = {
        "retouch_backend": "api",
        "retouch_api_key": API_KEY,
        "retouch_api_base_url": upstream.base_url,
        "retouch_max_retries": 0,
        "jobs_delivery_attempts": 2,
    }
    values.update(overrides)
    platform = DiscordSettings.load(bot_token=fake.token, **(discord_settings or {}))
    return service_settings(tmp_path, **values), platform


@asynccontextmanager
async def running(
    fake: FakeDiscord, config: Config, clock: Callable[[], float] = time.time
) -> AsyncIterator[asyncio.Task[None]]:
    """`run_discord` as a task, connected and ready; stopped gracefully on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_discord(*config, stop, clock=clock))
    ready = asyncio.create_task(fake.wait_ready())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # raises what stopped the bot
    await ready
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def jpeg(width: int = 48, height: int = 40) -> bytes:
    return sample_jpeg(width, height)


def of(interaction: JSON, method: str, pattern: str) -> Callable[[Call], bool]:
    """A `wait_for` predicate: calls of this interaction's token with this method and route."""
    regex = re.compile(pattern)

    def match(call: Call) -> bool:
        return (
            call.token == interaction["token"]
            and call.method == method
            and bool(regex.search(call.path))
            and 200 <= call.status < 300
        )

    return match


async def result_of(fake: FakeDiscord, interaction: JSON) -> Call:
    """The follow-up that carried a result file."""

    def with_file(call: Call) -> bool:
        return of(interaction, "POST", FOLLOWUP)(call) and bool(call.files)

    [call] = await fake.wait_for(with_file)
    return call


async def ephemeral_of(fake: FakeDiscord, interaction: JSON) -> str:
    """The text of the first ephemeral answer (an immediate response or a follow-up)."""

    def ephemeral(call: Call) -> bool:
        if call.token != interaction["token"] or call.method != "POST" or call.status >= 300:
            return False
        body = call.json or {}
        data = body.get("data", body) if re.search(CALLBACK, call.path) else body
        return bool(int(data.get("flags") or 0) & EPHEMERAL)

    [call] = await fake.wait_for(ephemeral)
    body = call.json or {}
    return str((body.get("data") or body).get("content"))


def embed_fields(call: Call) -> dict[str, str]:
    [embed] = call.json["embeds"]
    return {field["name"]: field["value"] for field in embed["fields"]}


def no_secrets_upstream(upstream: FakeUpstream, *secrets: str) -> None:
    for request in upstream.requests:
        raw = request.body.decode("latin-1") + json.dumps(request.headers) + request.query
        for secret in secrets:
            assert secret not in raw


# --- /retouch -----------------------------------------------------------------------------


async def test_retouch_defers_then_follows_up_with_the_result(
    tmp_path: Path,
    fake: FakeDiscord,
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    photo = jpeg()
    async with running(fake, settings_for(tmp_path, fake, upstream)):
        interaction = await fake.slash_command(
            "retouch", {"image": fake.attachment("portrait.jpg", photo)}
        )
        result = await result_of(fake, interaction)
        await fake.wait_for(of(interaction, "DELETE", r"/messages/\d+$"))

    callback = fake.responses_for(interaction)[0]
    assert callback.json == {"type": 5}
    [upload] = result.files
    assert upload.data.startswith(b"\xff\xd8") and upload.filename == "retouched.jpg"
    fields = embed_fields(result)
    assert fields["Fidelity"] == "0.1" and fields["Left today"] == "4"
    rows = result.json["components"]
    ids = [b["custom_id"] for b in rows[0]["components"]]
    assert [i.rsplit(":", 1)[1] for i in ids[:4]] == ["0.1", "0.3", "0.5", "0.7"]
    assert ids[4].startswith("rt:cmp:")  # and Compare, the fifth
    [call] = upstream.calls
    assert call.json["extra_body"]["codeformer_fidelity"] == 0.1
    assert (call.data_url() or "").startswith("data:image/jpeg;base64,")
    no_secrets_upstream(upstream, fake.token, interaction["token"])
    assert not [
        c for c in fake.calls if API_KEY.encode() in c.body + json.dumps(c.headers).encode()
    ]
    logged = "\n".join(r.getMessage() + str(r.exc_text or "") for r in caplog.records)
    assert fake.token not in logged and interaction["token"] not in logged

    sync = fake.calls_to("PUT", f"/applications/{fake.application_id}/commands")[0]
    by_name = {c["name"]: c for c in sync.json}
    assert set(by_name) >= {"retouch", "Retouch photo", "quota", "fidelity", "forget", "stats"}
    assert by_name["Retouch photo"]["type"] == 3
    options = {o["name"]: o for o in by_name["retouch"]["options"]}
    assert options["fidelity"]["min_value"] == 0.0 and options["fidelity"]["max_value"] == 1.0
    assert by_name["retouch"]["contexts"] == [0, 1, 2]


async def test_fidelity_option_and_the_saved_default(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    async with running(fake, settings_for(tmp_path, fake, upstream)):
        chosen = await fake.slash_command(
            "retouch", {"image": fake.attachment("a.jpg", jpeg()), "fidelity": 0.5}
        )
        assert embed_fields(await result_of(fake, chosen))["Fidelity"] == "0.5"

        saved = await fake.slash_command("fidelity", {"value": 0.3})
        assert await ephemeral_of(fake, saved) == (
            "Saved: your photos will use fidelity 0.3 unless you say otherwise."
        )
        shown = await fake.slash_command("fidelity")
        assert (await ephemeral_of(fake, shown)).startswith("Your default fidelity is 0.3.")
        default = await fake.slash_command("retouch", {"image": fake.attachment("b.jpg", jpeg())})
        assert embed_fields(await result_of(fake, default))["Fidelity"] == "0.3"
        quota = await fake.slash_command("quota")
        assert (await ephemeral_of(fake, quota)).startswith("Today you've used 2 of 5; 3 left.")
    assert [c.json["codeformer_fidelity"] for c in upstream.calls] == [0.5, 0.3]


async def test_user_errors_are_ephemeral_and_cost_nothing(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    async with running(fake, settings_for(tmp_path, fake, upstream)):
        text = await fake.slash_command(
            "retouch", {"image": fake.attachment("notes.txt", b"hello", "text/plain")}
        )
        assert "isn't an image" in await ephemeral_of(fake, text)
        # Discord enforces min/max, but a raw out-of-range value must still be refused.
        for value in (1.5, -0.2):
            bad = await fake.slash_command(
                "retouch", {"image": fake.attachment("a.jpg", jpeg()), "fidelity": value}
            )
            assert "between 0 and 1" in await ephemeral_of(fake, bad)
        no_files = await fake.slash_command(
            "retouch",
            {"image": fake.attachment("a.jpg", jpeg())},
            channel_id=fake.channel_id("no-files"),
        )
        assert "Attach Files" in await ephemeral_of(fake, no_files)
        quota = await fake.slash_command("quota")
        assert (await ephemeral_of(fake, quota)).startswith("Today you've used 0 of 5")
    for interaction in (text, bad, no_files):
        [callback] = fake.responses_for(interaction)
        assert callback.json["type"] == 4 and callback.json["data"]["flags"] == EPHEMERAL
    assert upstream.requests == []


async def test_quota_exhausted_answers_with_the_reset_time(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    settings = settings_for(tmp_path, fake, upstream, quota_per_user_per_day=1)
    async with running(fake, settings):
        first = await fake.slash_command("retouch", {"image": fake.attachment("a.jpg", jpeg())})
        await result_of(fake, first)
        second = await fake.slash_command("retouch", {"image": fake.attachment("b.jpg", jpeg())})
        refusal = await ephemeral_of(fake, second)
    assert re.fullmatch(
        r"You've used all 1 photos for today\. Your quota resets at 00:00 UTC "
        r"\(in (\d+ h )?\d+ min\)\.",
        refusal,
    )
    assert len(upstream.calls) == 1
    [left] = fake.messages_for(second)  # the public "thinking" message was deleted
    assert left["flags"] & EPHEMERAL and left["content"] == refusal


# --- the context menu -----------------------------------------------------------------------


async def test_context_menu_retouches_every_image_into_one_message(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    gate = Gate()
    upstream.default = gate
    general = fake.channel_id("general")
    target = fake.add_message(
        general,
        content="holiday",
        attachments=[
            ("one.jpg", jpeg(40, 30), "image/jpeg"),
            ("notes.txt", b"not a photo", "text/plain"),
            ("two.jpg", jpeg(30, 40), "image/jpeg"),
        ],
    )
    fast = {"status_edit_interval_seconds": 0.1}
    async with running(fake, settings_for(tmp_path, fake, upstream, fast)):
        interaction = await fake.message_command("Retouch photo", target)
        await gate.wait_entered(2)

        def both_lines(call: Call) -> bool:
            return of(interaction, "PATCH", r"/messages/")(call) and "\n#2 " in call.json["content"]

        await fake.wait_for(both_lines)  # the latest state, within one interval
        gate.opened.set()
        result = await result_of(fake, interaction)
        await fake.wait_for(of(interaction, "DELETE", r"/messages/\d+$"))

    assert [f.filename for f in result.files] == ["retouched-1.jpg", "retouched-2.jpg"]
    sizes = [Image.open(io.BytesIO(f.data)).size for f in result.files]
    assert sizes == [(40, 30), (30, 40)]
    rows = result.json["components"]
    assert len(rows) == 2 and rows[1]["components"][0]["label"] == "#2 Redo 0.1"
    assert len(upstream.calls) == 2
    [message] = [m for m in fake.channel_messages(general) if m["attachments"] and m is not target]
    assert message["interaction_metadata"]["name"] == "Retouch photo"
    statuses = [c.json["content"] for c in fake.responses_for(interaction) if c.method == "PATCH"]
    assert any(s.startswith("#1 ") and "\n#2 " in s for s in statuses), statuses


async def test_context_menu_without_images_says_so(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    target = fake.add_message(fake.channel_id("general"), content="just words")
    async with running(fake, settings_for(tmp_path, fake, upstream)):
        interaction = await fake.message_command("Retouch photo", target)
        assert await ephemeral_of(fake, interaction) == "That message has no images I can retouch."


# --- buttons --------------------------------------------------------------------------------


async def test_redo_button_works_after_a_restart(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    settings = settings_for(tmp_path, fake, upstream)
    photo = fake.attachment("a.jpg", jpeg())
    async with running(fake, settings):
        first = await fake.slash_command("retouch", {"image": photo})
        result = await result_of(fake, first)
    message = fake.messages[int(result.response["id"])]
    buttons = {b["custom_id"][-3:]: b["custom_id"] for b in message["components"][0]["components"]}

    async with running(fake, settings):
        stranger = await fake.press_button(buttons["0.5"], message, user=fake.make_user("eve"))
        assert "Only the person" in await ephemeral_of(fake, stranger)
        pressed = await fake.press_button(buttons["0.5"], message)
        again = await result_of(fake, pressed)
        # Discord's CDN links expire: the photo is gone, the user is told, nothing is charged.
        fake.expire_attachment(photo)
        gone = await fake.press_button(buttons["0.7"], message)
        assert "no longer available" in await ephemeral_of(fake, gone)
        quota = await fake.slash_command("quota")
        assert (await ephemeral_of(fake, quota)).startswith("Today you've used 2 of 5")

    assert fake.responses_for(pressed)[0].json == {"type": 5}
    assert embed_fields(again)["Fidelity"] == "0.5"
    assert [c.json["codeformer_fidelity"] for c in upstream.calls] == [0.1, 0.5]


async def test_a_forged_redo_value_is_refused_and_costs_nothing(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    async with running(fake, settings_for(tmp_path, fake, upstream)):
        first = await fake.slash_command("retouch", {"image": fake.attachment("a.jpg", jpeg())})
        result = await result_of(fake, first)
        message = fake.messages[int(result.response["id"])]
        # discord.py answers only buttons that are on the message: these stand for a message
        # whose buttons carry values the bot does not offer (forged, or from another version).
        button = message["components"][0]["components"][0]
        prefix = button["custom_id"].rsplit(":", 1)[0]
        for forged in ("0.2", "5", "nan"):
            button["custom_id"] = f"{prefix}:{forged}"
            pressed = await fake.press_button(button["custom_id"], message)
            assert await ephemeral_of(fake, pressed) == (
                "Redo takes fidelity 0.1, 0.3, 0.5, 0.7 only. Nothing was retouched, and nothing "
                "counted against your quota."
            )
        quota = await fake.slash_command("quota")
        assert (await ephemeral_of(fake, quota)).startswith("Today you've used 1 of 5")
    assert [c.json["codeformer_fidelity"] for c in upstream.calls] == [0.1]


async def test_cancel_while_queued_refunds_and_delivers_nothing(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    gate = Gate()
    upstream.default = gate
    settings = settings_for(tmp_path, fake, upstream, max_concurrent_jobs=1)
    async with running(fake, settings):
        running_job = await fake.slash_command(
            "retouch", {"image": fake.attachment("a.jpg", jpeg())}
        )
        await gate.wait_entered(1)
        queued = await fake.slash_command("retouch", {"image": fake.attachment("b.jpg", jpeg())})

        def shows_queued(call: Call) -> bool:
            return of(queued, "PATCH", r"/messages/\d+$")(call) and "#1" in call.json["content"]

        [status] = await fake.wait_for(shows_queued)
        [cancel] = status.json["components"][0]["components"]
        message = fake.messages[int(status.response["id"])]

        other = await fake.press_button(
            cancel["custom_id"], message, user=fake.make_user("mallory")
        )
        assert "Only the person" in await ephemeral_of(fake, other)
        mine = await fake.press_button(cancel["custom_id"], message)
        assert await ephemeral_of(fake, mine) == (
            "Cancelled. This photo didn't count against your quota."
        )
        await fake.wait_for(of(queued, "DELETE", r"/messages/\d+$"))

        gate.opened.set()
        await result_of(fake, running_job)
        quota = await fake.slash_command("quota")
        assert (await ephemeral_of(fake, quota)).startswith("Today you've used 1 of 5")
    assert not [c for c in fake.responses_for(queued) if c.files]
    assert gate.entered == 1


async def test_forget_asks_first(tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream) -> None:
    async with running(fake, settings_for(tmp_path, fake, upstream)):
        asked = await fake.slash_command("forget")
        question = await ephemeral_of(fake, asked)
        [message] = fake.messages_for(asked)
        yes = message["components"][0]["components"][0]["custom_id"]
        pressed = await fake.press_button(yes, message)
        [answer] = await fake.wait_for(of(pressed, "POST", CALLBACK))
    assert question.startswith("Delete your saved settings")
    assert answer.json["type"] == 7
    assert answer.json["data"]["content"].startswith("Done: I deleted your settings")


# --- delivery -------------------------------------------------------------------------------


async def test_rate_limited_follow_up_is_retried(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    fake.fail_next("POST", FOLLOWUP, 429, retry_after=0.01)
    async with running(fake, settings_for(tmp_path, fake, upstream)):
        interaction = await fake.slash_command(
            "retouch", {"image": fake.attachment("a.jpg", jpeg())}
        )
        await result_of(fake, interaction)
    posts = [c.status for c in fake.responses_for(interaction) if c.method == "POST"]
    assert posts == [200, 429, 200]
    assert fake.rate_limit_stats()["requests_during_wait"] == 0


async def test_job_outliving_its_token_is_posted_in_the_channel(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    gate = Gate()
    upstream.default = gate
    general = fake.channel_id("general")
    async with running(fake, settings_for(tmp_path, fake, upstream)):
        interaction = await fake.slash_command(
            "retouch", {"image": fake.attachment("a.jpg", jpeg())}
        )
        await gate.wait_entered()
        fake.expire(interaction)
        gate.opened.set()
        [post] = await fake.wait_for(("POST", rf"^/channels/{general}/messages$"))
    [expired] = [c for c in fake.responses_for(interaction) if c.files]
    assert expired.status == 404 and expired.response["code"] == 10015
    assert post.status == 200 and post.files[0].data.startswith(b"\xff\xd8")
    assert post.authorization == f"Bot {fake.token}"
    assert post.json["content"].startswith(f"<@{fake.default_user['id']}> here is your")
    assert post.json["components"][0]["components"][0]["custom_id"].startswith("rt:redo:")


async def test_old_token_by_the_clock_and_a_channel_without_attach_files(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    """A token older than 15 minutes is not tried; a 403 on the channel post is explained."""
    general, no_files = fake.channel_id("general"), fake.channel_id("no-files")
    settings = settings_for(tmp_path, fake, upstream)
    async with running(fake, settings, clock=lambda: time.time() + 3600):
        late = await fake.slash_command("retouch", {"image": fake.attachment("a.jpg", jpeg())})
        [post] = await fake.wait_for(("POST", rf"^/channels/{general}/messages$"))
        # The interaction claims Attach Files, but the channel denies it to the bot.
        await fake.slash_command(
            "retouch",
            {"image": fake.attachment("b.jpg", jpeg())},
            channel_id=no_files,
            app_permissions=DEFAULT_PERMISSIONS,
        )

        def posted_text(call: Call) -> bool:
            return call.path == f"/channels/{no_files}/messages" and call.status == 200

        [note] = await fake.wait_for(posted_text)
        quota = await fake.slash_command("quota")
        assert (await ephemeral_of(fake, quota)).startswith("Today you've used 1 of 5")
    assert post.files and not [c for c in fake.responses_for(late) if c.path.count("/") == 3]
    refused = fake.calls_to("POST", f"/channels/{no_files}/messages")[0]
    assert refused.status == 403 and refused.response["code"] == 50013
    assert "Attach Files" in note.json["content"] and not note.files
    assert not int(fake.bot_permissions(no_files)) & ATTACH_FILES


async def test_result_over_the_upload_limit_is_reencoded(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    noise = np.random.default_rng(7).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    assert len(buffer.getvalue()) > 1_000_000
    upstream.image = buffer.getvalue()
    upstream.default = Success()
    async with running(fake, settings_for(tmp_path, fake, upstream)):
        payload = await fake.slash_command(
            "retouch", {"image": fake.attachment("a.jpg", jpeg())}, dispatch=False
        )
        payload["attachment_size_limit"] = 300_000
        await fake.dispatch("INTERACTION_CREATE", payload)
        result = await result_of(fake, payload)
    [upload] = result.files
    assert len(upload.data) <= 300_000 and upload.filename == "retouched.jpg"


# --- contexts, languages, admins ------------------------------------------------------------


async def test_direct_message_works(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    bob = fake.make_user("bob")
    async with running(fake, settings_for(tmp_path, fake, upstream)):
        interaction = await fake.slash_command(
            "retouch", {"image": fake.attachment("a.jpg", jpeg())}, user=bob, dm=True
        )
        await result_of(fake, interaction)
    [message] = [m for m in fake.channel_messages(fake.dm_channel_id(bob)) if m["attachments"]]
    assert message["attachments"][0]["filename"] == "retouched.jpg"


async def test_chinese_locale_answers_in_chinese(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    async with running(fake, settings_for(tmp_path, fake, upstream)):
        quota = await fake.slash_command("quota", locale="zh-CN")
        assert (await ephemeral_of(fake, quota)).startswith("今天已用 0/5 次")
        interaction = await fake.slash_command(
            "retouch", {"image": fake.attachment("a.jpg", jpeg())}, locale="zh-TW"
        )
        result = await result_of(fake, interaction)
    assert result.json["embeds"][0]["title"] == "美颜完成"
    assert embed_fields(result)["保真度"] == "0.1"
    assert result.json["components"][0]["components"][0]["label"] == "重做 0.1"


async def test_admin_commands_check_admin_ids(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    admin = fake.make_user("admin")
    settings = settings_for(tmp_path, fake, upstream, admin_ids=[f"discord:{admin['id']}"])
    alice = fake.default_user
    async with running(fake, settings):
        refused = await fake.slash_command("stats")
        assert await ephemeral_of(fake, refused) == "That command is for the bot's admins."
        stats = await fake.slash_command("stats", user=admin)
        assert (await ephemeral_of(fake, stats)).startswith("Today (")
        granted = await fake.slash_command(
            "grant",
            [
                {"name": "user", "type": 6, "value": alice["id"]},
                {"name": "credits", "type": 4, "value": 3},
            ],
            user=admin,
        )
        assert (
            await ephemeral_of(fake, granted) == f"discord:{alice['id']} now has 3 extra credits."
        )
        quota = await fake.slash_command("quota")
        assert "plus 3 extra credits" in await ephemeral_of(fake, quota)


async def test_sharded_client_and_guild_command_sync(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    settings = settings_for(
        tmp_path,
        fake,
        upstream,
        discord_settings={"shard_count": "auto", "guild_ids": [fake.guild.id]},
    )
    async with running(fake, settings):
        interaction = await fake.slash_command(
            "retouch", {"image": fake.attachment("a.jpg", jpeg())}
        )
        await result_of(fake, interaction)
    assert fake.calls_to("GET", "/gateway/bot")
    assert [f["d"]["shard"] for f in fake.received_frames(op=2)] == [[0, 1]]
    assert fake.calls_to("PUT", f"/applications/{fake.application_id}/guilds/{fake.guild.id}")
    assert not [c for c in fake.calls if c.method == "PUT" and re.search(GLOBAL_COMMANDS, c.path)]


# --- start-up -------------------------------------------------------------------------------


def test_cli_needs_a_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["discord"]) == 2
    assert capsys.readouterr().err.strip() == (
        "retouch-bot: configuration error: DISCORD_BOT_TOKEN: must be set to run the Discord bot"
    )


@pytest.mark.parametrize(
    ("count", "ids", "expected"),
    [
        (None, [], "Client"),
        ("auto", [], "AutoShardedClient"),
        (4, [0, 1], "AutoShardedClient"),
        (None, [0], "DISCORD_SHARD_IDS: needs DISCORD_SHARD_COUNT"),
        (2, [2], "DISCORD_SHARD_IDS: every id must be below DISCORD_SHARD_COUNT=2"),
    ],
)
def test_sharding_settings(count: Any, ids: list[int], expected: str) -> None:
    try:
        client = build_client(DiscordSettings.load(shard_count=count, shard_ids=ids))
    except ConfigError as exc:
        assert str(exc).startswith(expected)
        return
    assert type(client).__name__ == expected
    if isinstance(client, discord.AutoShardedClient):
        assert client.shard_ids == (ids or None)


@pytest.mark.parametrize("count", [None, "auto"])
def test_no_voice_warnings_at_start_up(
    count: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The bot never joins a voice channel: missing voice libraries are no news to operators."""
    monkeypatch.setattr(discord.VoiceClient, "warn_nacl", True)  # as in a fresh process
    monkeypatch.setattr(discord.VoiceClient, "warn_dave", True, raising=False)
    with caplog.at_level(logging.DEBUG, logger="discord"):
        build_client(DiscordSettings.load(shard_count=count))
    assert not [r for r in caplog.records if "voice" in r.getMessage().lower()]
