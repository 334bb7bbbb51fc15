"""The fake Discord, proven with the real discord.py: login, gateway, commands, views and faults."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import discord
import pytest
from discord import app_commands
from PIL import Image

from tests.fake_discord import (
    ATTACH_FILES,
    CALLBACK,
    EPHEMERAL,
    FOLLOWUP,
    LOADING,
    ChannelSpec,
    FakeDiscord,
    GuildSpec,
)
from tests.fake_discord_limits import DiscordLimits


def png(width: int = 24, height: int = 16) -> bytes:
    """A small real PNG: the stand-in for a retouched photo."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 150, 120)).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(width: int = 32, height: int = 24) -> bytes:
    """A small real JPEG: the stand-in for a user's photo."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 150, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


RESULT = png()


class RedoView(discord.ui.View):
    """A persistent view like the bot's redo buttons: fixed custom_id, no timeout."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Redo 0.3", custom_id="redo:0.3")
    async def redo(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        await interaction.response.edit_message(content="redoing at 0.3")
        cast(ProbeBot, interaction.client).seen.put_nowait(("redo", interaction))


class ProbeBot(discord.Client):
    """A discord.py client with a command tree whose callbacks report what they saw."""

    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.ready = asyncio.Event()
        self.resumed = asyncio.Event()
        self.seen: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.release = asyncio.Event()

        @self.tree.command(name="retouch", description="Retouch a portrait photo")
        async def retouch(
            interaction: discord.Interaction, image: discord.Attachment, fidelity: float = 0.1
        ) -> None:
            data = await image.read()
            await interaction.response.defer(thinking=True)
            message = await interaction.followup.send(
                f"fidelity {fidelity}",
                file=discord.File(io.BytesIO(RESULT), "retouched.png"),
                wait=True,
            )
            self.seen.put_nowait(("retouch", (interaction, image, data, fidelity, message)))

        @self.tree.command(name="slow", description="Defer, then answer when the test says so")
        async def slow(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            await self.release.wait()
            try:
                await interaction.followup.send(file=discord.File(io.BytesIO(RESULT), "late.png"))
            except discord.NotFound as exc:
                assert interaction.channel is not None
                channel = cast(discord.TextChannel, interaction.channel)
                await channel.send(
                    "posted in the channel instead",
                    file=discord.File(io.BytesIO(RESULT), "late.png"),
                )
                self.seen.put_nowait(("slow", exc))

        @self.tree.command(name="cycle", description="Use every interaction response route")
        async def cycle(interaction: discord.Interaction) -> None:
            await interaction.response.send_message(
                "queued", file=discord.File(io.BytesIO(RESULT), "queued.png")
            )
            edited = await interaction.edit_original_response(
                content="done", attachments=[discord.File(io.BytesIO(png(8, 8)), "done.png")]
            )
            original = await interaction.original_response()
            note = await interaction.followup.send("note", ephemeral=True, wait=True)
            note = await note.edit(content="note, edited")
            await note.delete()
            self.seen.put_nowait(("cycle", (edited, original, note)))

        @self.tree.context_menu(name="Retouch photo")
        async def retouch_photo(interaction: discord.Interaction, message: discord.Message) -> None:
            data = await message.attachments[0].read()
            await interaction.response.send_message("working on it", ephemeral=True)
            self.seen.put_nowait(("menu", (interaction, message, data)))

    async def setup_hook(self) -> None:
        self.add_view(RedoView())

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No 5-second pause before a re-IDENTIFY in tests."""

    async def on_ready(self) -> None:
        self.ready.set()

    async def on_resumed(self) -> None:
        self.resumed.set()

    async def next_seen(self, kind: str) -> Any:
        """What the next callback of this kind observed."""
        seen_kind, value = await asyncio.wait_for(self.seen.get(), 10)
        assert seen_kind == kind, (seen_kind, value)
        return value


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    """Discord's rate limits with every window 20 times shorter (discord.py waits them out)."""
    async with FakeDiscord(limits=DiscordLimits().scaled(0.05)) as server:
        yield server


@pytest.fixture
async def bot(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ProbeBot]:
    """A logged-in, connected, ready ProbeBot; closed cleanly afterwards."""
    fake.patch(monkeypatch)
    client = ProbeBot()
    await client.login(fake.token)
    task = asyncio.create_task(client.connect(reconnect=False))
    await asyncio.wait_for(client.ready.wait(), 10)
    yield client
    await client.close()
    await asyncio.wait_for(task, 10)
    assert fake.errors == []
    assert fake.violations == []
    fake.assert_limits_kept()


async def test_login_and_gateway_fill_the_cache(fake: FakeDiscord, bot: ProbeBot) -> None:
    login, app_info = fake.calls[:2]
    assert (login.method, login.path) == ("GET", "/users/@me")
    assert login.authorization == "Bot fake-discord-token"
    assert (app_info.method, app_info.path) == ("GET", "/oauth2/applications/@me")
    assert fake.gateway_urls == ["/ws/?v=10&encoding=json&compress=zlib-stream"]

    [identify] = fake.received_frames(op=2)
    assert identify["d"]["token"] == fake.token
    assert identify["d"]["intents"] == discord.Intents.default().value
    assert fake.received_frames(op=1), "discord.py heartbeats at once after HELLO"

    assert bot.user is not None and bot.user.id == fake.bot_user_id
    assert bot.application_id == fake.application_id
    guild = bot.get_guild(fake.guild.id)
    assert guild is not None and guild.me is not None
    general = guild.get_channel(fake.channel_id("general"))
    no_files = guild.get_channel(fake.channel_id("no-files"))
    thread = guild.get_thread(fake.channel_id("retouch-thread"))
    assert isinstance(general, discord.TextChannel) and isinstance(no_files, discord.TextChannel)
    assert thread is not None and thread.parent == general
    assert general.permissions_for(guild.me).attach_files
    assert not no_files.permissions_for(guild.me).attach_files
    assert no_files.permissions_for(guild.me).send_messages
    assert thread.permissions_for(guild.me).attach_files


async def test_tree_sync_records_the_command_json(fake: FakeDiscord, bot: ProbeBot) -> None:
    synced = await bot.tree.sync()
    [put] = fake.calls_to("PUT", f"/applications/{fake.application_id}/commands")
    by_name = {c["name"]: c for c in put.json}
    assert set(by_name) == {"retouch", "slow", "cycle", "Retouch photo"}
    options = {o["name"]: o for o in by_name["retouch"]["options"]}
    assert options["image"]["type"] == 11 and options["image"]["required"]
    assert options["fidelity"]["type"] == 10 and not options["fidelity"].get("required")
    assert by_name["Retouch photo"]["type"] == 3
    assert {c.id for c in synced} == {int(c["id"]) for c in fake.commands[None]}
    assert {c.name for c in await bot.tree.fetch_commands()} == set(by_name)

    guild = discord.Object(fake.guild.id)
    bot.tree.copy_global_to(guild=guild)
    await bot.tree.sync(guild=guild)
    assert fake.calls_to("PUT", f"/applications/{fake.application_id}/guilds/{fake.guild.id}")
    assert {c["guild_id"] for c in fake.commands[fake.guild.id]} == {str(fake.guild.id)}


async def test_slash_command_defers_then_follows_up_with_a_file(
    fake: FakeDiscord, bot: ProbeBot
) -> None:
    await bot.tree.sync()
    photo = jpeg()
    image = fake.attachment("portrait.jpg", photo)
    interaction = await fake.slash_command("retouch", {"image": image, "fidelity": 0.3})

    seen_interaction, attachment, data, fidelity, message = await bot.next_seen("retouch")
    assert seen_interaction.id == int(interaction["id"])
    assert seen_interaction.app_permissions.attach_files
    assert (attachment.filename, attachment.content_type, attachment.size) == (
        "portrait.jpg",
        "image/jpeg",
        len(photo),
    )
    assert (attachment.width, attachment.height) == (32, 24)
    assert data == photo and fidelity == 0.3
    assert message.attachments[0].filename == "retouched.png"

    callback, followup = fake.responses_for(interaction)
    assert callback.json == {"type": 5} and callback.authorization is None
    assert followup.files[0].filename == "retouched.png" and followup.files[0].data == RESULT
    assert followup.json["content"] == "fidelity 0.3" and followup.query["wait"] == "1"
    assert followup.authorization is None
    [cdn] = [c for c in fake.calls if c.path.startswith("/ephemeral-attachments/")]
    assert cdn.status == 200 and cdn.authorization is None

    loading, sent = fake.messages_for(interaction)
    assert loading["flags"] & LOADING and loading["interaction_metadata"]["name"] == "retouch"
    assert sent["attachments"][0]["size"] == len(RESULT)
    assert sent["attachments"][0]["content_type"] == "image/png"
    assert fake.channel_messages(fake.channel_id("general")) == [loading, sent]


async def test_button_on_an_old_message_reaches_the_persistent_view(
    fake: FakeDiscord, bot: ProbeBot
) -> None:
    button = {"type": 2, "style": 2, "label": "Redo 0.3", "custom_id": "redo:0.3"}
    old = fake.add_message(
        fake.channel_id("general"),
        fake.bot_user,
        "your photo",
        components=[{"type": 1, "components": [button]}],
    )
    pressed = await fake.press_button("redo:0.3", old)

    interaction = await bot.next_seen("redo")
    assert interaction.message is not None and interaction.message.id == int(old["id"])
    [callback] = fake.responses_for(pressed)
    assert callback.json["type"] == 7
    assert fake.messages[int(old["id"])]["content"] == "redoing at 0.3"


async def test_message_context_menu_gets_the_resolved_message(
    fake: FakeDiscord, bot: ProbeBot
) -> None:
    photo = jpeg(40, 30)
    channel_id = fake.channel_id("general")
    target = fake.add_message(channel_id, attachments=[("holiday.jpg", photo, "image/jpeg")])
    interaction = await fake.message_command("Retouch photo", target)

    seen_interaction, message, data = await bot.next_seen("menu")
    assert message.id == int(target["id"]) and message.author.name == "alice"
    assert message.attachments[0].filename == "holiday.jpg" and data == photo
    assert (message.attachments[0].width, message.attachments[0].height) == (40, 30)
    assert seen_interaction.user.id == int(fake.default_user["id"])
    [callback] = fake.responses_for(interaction)
    assert callback.json["type"] == 4 and callback.json["data"]["flags"] == EPHEMERAL
    [answer] = fake.messages_for(interaction)
    assert answer["flags"] & EPHEMERAL
    assert answer not in fake.channel_messages(channel_id, ephemeral=False)


async def test_rate_limited_follow_up_is_retried_and_the_file_arrives(
    fake: FakeDiscord, bot: ProbeBot
) -> None:
    fake.fail_next("POST", FOLLOWUP, 429, retry_after=0.01)
    interaction = await fake.slash_command("retouch", {"image": fake.attachment("a.jpg", jpeg())})
    limited, delivered = await fake.wait_for(("POST", FOLLOWUP), count=2)
    assert limited.status == 429 and limited.response["retry_after"] == 0.01
    assert delivered.status == 200 and delivered.files[0].data == RESULT
    await bot.next_seen("retouch")
    assert [c.status for c in fake.responses_for(interaction)] == [200, 429, 200]
    assert len(fake.messages_for(interaction)) == 2  # the deferred answer and one follow-up
    assert fake.rate_limit_stats()["requests_during_wait"] == 0  # discord.py waited it out


async def test_slash_command_in_a_direct_message(fake: FakeDiscord, bot: ProbeBot) -> None:
    user = fake.make_user("bob")
    await fake.slash_command(
        "retouch", {"image": fake.attachment("a.jpg", jpeg())}, user=user, dm=True
    )
    seen_interaction, *_ = await bot.next_seen("retouch")
    assert seen_interaction.guild is None
    assert isinstance(seen_interaction.channel, discord.DMChannel)
    assert seen_interaction.user.id == int(user["id"])
    messages = fake.channel_messages(fake.dm_channel_id(user))
    assert messages[-1]["attachments"][0]["filename"] == "retouched.png"


async def test_expired_token_falls_back_to_the_channel(fake: FakeDiscord, bot: ProbeBot) -> None:
    interaction = await fake.slash_command("slow")
    await fake.wait_for(("POST", CALLBACK))
    fake.expire(interaction)
    bot.release.set()
    error = await bot.next_seen("slow")
    assert isinstance(error, discord.NotFound) and error.code == 10015
    [post] = fake.calls_to("POST", f"/channels/{fake.channel_id('general')}/messages")
    assert post.authorization == f"Bot {fake.token}" and post.files[0].data == RESULT


async def test_channel_permissions_and_injected_errors(fake: FakeDiscord, bot: ProbeBot) -> None:
    no_files = bot.get_channel(fake.channel_id("no-files"))
    general = bot.get_channel(fake.channel_id("general"))
    assert isinstance(no_files, discord.TextChannel) and isinstance(general, discord.TextChannel)
    with pytest.raises(discord.Forbidden) as forbidden:
        await no_files.send(file=discord.File(io.BytesIO(RESULT), "x.png"))
    assert forbidden.value.code == 50013
    assert (await no_files.send("text is fine")).content == "text is fine"

    fake.fail_next("POST", r"^/channels/\d+/messages$", 403)
    with pytest.raises(discord.Forbidden) as injected:
        await general.send("hello")
    assert injected.value.code == 50013
    sent = await general.send("hello again", file=discord.File(io.BytesIO(RESULT), "ok.png"))
    assert sent.attachments[0].size == len(RESULT)


async def test_gateway_resume_replays_missed_events_and_reidentifies(
    fake: FakeDiscord, bot: ProbeBot
) -> None:
    await fake.drop_connections(4000)
    await fake.slash_command("retouch", {"image": fake.attachment("a.jpg", jpeg())})
    await bot.next_seen("retouch")
    [resume] = await fake.wait_for_frame(6)
    assert resume.data["token"] == fake.token and resume.data["session_id"]
    await asyncio.wait_for(bot.resumed.wait(), 10)
    assert fake.gateway_urls[1].startswith("/ws-resume")
    order = [(f.direction, f.op, f.event) for f in fake.frames]
    resumed_at = order.index(("in", 6, None))
    assert order.index(("out", 0, "INTERACTION_CREATE")) > resumed_at, "replayed after RESUME"
    assert ("out", 0, "RESUMED") in order[resumed_at:]

    bot.ready.clear()
    await fake.invalidate_sessions()
    await fake.wait_for_frame(2, count=2)
    await asyncio.wait_for(bot.ready.wait(), 10)
    await fake.slash_command("retouch", {"image": fake.attachment("b.jpg", jpeg())})
    await bot.next_seen("retouch")


async def test_sharded_client_asks_for_the_gateway(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    guilds = [GuildSpec("even", id=1000 << 22), GuildSpec("odd", id=1001 << 22)]
    async with FakeDiscord(guilds=guilds, shards=2) as fake:
        fake.patch(monkeypatch)
        ready = asyncio.Event()

        class Sharded(discord.AutoShardedClient):
            async def before_identify_hook(
                self, shard_id: int | None, *, initial: bool = False
            ) -> None:
                """No 5-second pause between shards."""

            async def on_ready(self) -> None:
                ready.set()

        client = Sharded(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        await client.login(fake.token)
        task = asyncio.create_task(client.connect(reconnect=False))
        await asyncio.wait_for(ready.wait(), 10)
        assert fake.calls_to("GET", "/gateway/bot")
        shards = sorted(f["d"]["shard"] for f in fake.received_frames(op=2))
        assert shards == [[0, 2], [1, 2]]
        assert {g.name: g.shard_id for g in client.guilds} == {"even": 0, "odd": 1}
        await client.close()
        await asyncio.wait_for(task, 10)


async def test_raw_fault_shapes_and_authorization_checks(fake: FakeDiscord) -> None:
    api = fake.api_base
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{api}/users/@me") as response:
            assert response.status == 401
        fake.fail_next("GET", r"^/users/@me$", 429, retry_after=0.5, global_=True)
        headers = {"Authorization": f"Bot {fake.token}"}
        async with session.get(f"{api}/users/@me", headers=headers) as response:
            assert response.status == 429 and response.headers["Via"]
            assert response.headers["Retry-After"] == "1"
            assert response.headers["X-RateLimit-Global"] == "true"
            assert await response.json() == {
                "message": "You are being rate limited.",
                "retry_after": 0.5,
                "global": True,
            }
        fake.fail_next("*", r"^/users/@me$", 500)
        async with session.get(f"{api}/users/@me", headers=headers) as response:
            assert response.status == 500
        fake.fail_next("POST", FOLLOWUP, 404)
        async with session.post(f"{api}/webhooks/1/tok", json={"content": "x"}) as response:
            assert response.status == 404
            assert await response.json() == {"message": "Unknown Webhook", "code": 10015}
        async with session.post(f"{api}/webhooks/1/tok", headers=headers, json={}) as response:
            assert response.status == 404  # unknown token; and a bot token where none belongs
        fake.fail_next("GET", r"^/gateway$", 200, body="{not json")
        async with session.get(f"{api}/gateway") as response:
            assert await response.text() == "{not json"
    reasons = [reason for _, reason in fake.violations]
    assert len(reasons) == 2
    assert "without 'Bot <token>'" in reasons[0] and "Authorization header" in reasons[1]


async def test_interactions_get_unique_ids_and_channel_permissions(fake: FakeDiscord) -> None:
    custom = FakeDiscord(guilds=[GuildSpec(channels=[ChannelSpec("locked", deny=ATTACH_FILES)])])
    first = await fake.slash_command("retouch", dispatch=False)
    second = await fake.slash_command("retouch", dispatch=False)
    assert first["id"] != second["id"] and first["token"] != second["token"]
    locked = await custom.slash_command(
        "retouch", channel_id=custom.channel_id("locked"), dispatch=False
    )
    assert not int(locked["app_permissions"]) & ATTACH_FILES
    assert int(first["app_permissions"]) & ATTACH_FILES
    assert fake.responses_for(first) == []


async def test_original_response_edits_and_follow_up_edits(
    fake: FakeDiscord, bot: ProbeBot
) -> None:
    interaction = await fake.slash_command("cycle")
    edited, original, note = await bot.next_seen("cycle")
    assert edited.content == "done" and [a.filename for a in edited.attachments] == ["done.png"]
    assert original.id == edited.id and original.attachments[0].width == 8
    assert note.content == "note, edited" and note.flags.ephemeral
    routes = [(c.method, c.route) for c in fake.responses_for(interaction)]
    assert routes == [
        ("POST", "/interactions/{interaction_id}/{token}/callback"),
        ("PATCH", "/webhooks/{application_id}/{token}/messages/@original"),
        ("GET", "/webhooks/{application_id}/{token}/messages/@original"),
        ("POST", "/webhooks/{application_id}/{token}"),
        ("PATCH", "/webhooks/{application_id}/{token}/messages/{message_id}"),
        ("DELETE", "/webhooks/{application_id}/{token}/messages/{message_id}"),
    ]
    callback = fake.responses_for(interaction)[0]
    assert callback.json["type"] == 4 and callback.files[0].filename == "queued.png"
    [answer] = fake.messages_for(interaction)  # the deleted note is gone
    assert answer["content"] == "done" and answer["edited_timestamp"]


async def test_channel_replies_fetches_and_history(fake: FakeDiscord, bot: ProbeBot) -> None:
    general = bot.get_channel(fake.channel_id("general"))
    assert isinstance(general, discord.TextChannel)
    target = fake.add_message(general.id, content="please retouch")
    reply = await general.send("on it", reference=general.get_partial_message(int(target["id"])))
    assert reply.reference is not None and reply.reference.message_id == int(target["id"])
    assert (await general.fetch_message(reply.id)).content == "on it"
    history = [m.content async for m in general.history(limit=10)]
    assert history == ["on it", "please retouch"]
    with pytest.raises(discord.NotFound):
        await general.fetch_message(1)
    thread = bot.get_channel(fake.channel_id("retouch-thread"))
    assert isinstance(thread, discord.Thread)
    await thread.send(file=discord.File(io.BytesIO(RESULT), "in-thread.png"))
    [posted] = fake.channel_messages(thread.id)
    assert posted["attachments"][0]["filename"] == "in-thread.png"
