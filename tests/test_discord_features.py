"""A server's settings, languages and Compare, end to end: the real Discord bot (discord.py)
against the fake Discord, whose members have permissions (`tests/fake_discord_members.py`) and
whose clients show a command only to whom its `default_member_permissions` allow."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests import test_discord_bot
from tests.fake_discord import ApiError, FakeDiscord
from tests.fake_discord_components import check_components
from tests.fake_discord_members import MANAGE_GUILD, CommandHidden
from tests.test_discord_bot import ephemeral_of, jpeg, of, result_of, running, settings_for
from tests.upstream_fakes import FakeUpstream

JSON = dict[str, Any]
fake = test_discord_bot.fake
upstream = test_discord_bot.upstream
"""The fixtures of `tests/test_discord_bot.py`: the fake Discord and the fake upstream."""


def moderator_and_member(fake: FakeDiscord) -> tuple[JSON, JSON]:
    """Two members of the guild: one with Manage Server, one without."""
    moderator, member = fake.make_user("mod"), fake.make_user("member")
    fake.members.grant(moderator, MANAGE_GUILD)
    return moderator, member


async def settings_message(fake: FakeDiscord, moderator: JSON) -> tuple[JSON, JSON]:
    """`/settings` by the moderator: the interaction and the (private) menu message."""
    interaction = await fake.slash_command("settings", user=moderator)
    await ephemeral_of(fake, interaction)
    [menu] = fake.messages_for(interaction)
    return interaction, menu


async def choose(fake: FakeDiscord, menu: JSON, user: JSON, key: str, value: str) -> JSON:
    """Pick `value` in the menu of setting `key`; the component interaction."""
    pressed = await fake.press_button(
        f"rt:set:{key}", menu, user=user, component_type=3, values=[value]
    )

    def answered(call: Any) -> bool:
        return call.token == pressed["token"] and bool(call.status) and call.status < 300

    await fake.wait_for(answered)
    return pressed


def menus(message: JSON) -> dict[str, list[JSON]]:
    """The message's select menus by custom id: their options."""
    return {
        item["custom_id"]: item["options"]
        for row in message["components"]
        for item in row["components"]
        if item["type"] == 3
    }


async def test_an_admin_changes_a_setting_and_a_non_admin_is_refused(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    moderator, member = moderator_and_member(fake)
    async with running(fake, settings_for(tmp_path, fake, upstream)):
        [sync] = fake.calls_to("PUT", f"/applications/{fake.application_id}/commands")
        command = next(c for c in sync.json if c["name"] == "settings")
        assert int(command["default_member_permissions"]) == MANAGE_GUILD
        assert command["contexts"] == [0]
        with pytest.raises(CommandHidden):  # Discord shows it to Manage Server members only
            await fake.slash_command("settings", user=member)
        with pytest.raises(CommandHidden):  # and only in servers
            await fake.slash_command("settings", user=moderator, dm=True)

        _, menu = await settings_message(fake, moderator)
        assert menu["flags"] & 64  # private to the moderator
        assert menu["content"].startswith("**Settings of Retouch Test Guild**")
        assert "Default fidelity: **the bot's (0.1)**" in menu["content"]
        assert set(menus(menu)) == {"rt:set:fidelity", "rt:set:limit", "rt:set:who", "rt:set:lang"}

        # A member who lost Manage Server meanwhile, pressing the same menu: refused.
        refused = await fake.press_button(
            "rt:set:fidelity", menu, user=member, component_type=3, values=["0.5"]
        )
        assert await ephemeral_of(fake, refused) == (
            "Sorry, only members with Manage Server can change these settings."
        )
        pressed = await choose(fake, menu, moderator, "fidelity", "0.5")
        [update] = [c for c in fake.responses_for(pressed) if c.json and c.json.get("type") == 7]
        content = update.json["data"]["content"]
        assert (
            "Default fidelity: **0.5**" in content
            and "Saved: Default fidelity is now 0.5." in content
        )
        # The menu was redrawn with the new value chosen.
        options = menus(fake.messages[int(menu["id"])])["rt:set:fidelity"]
        assert [o["value"] for o in options if o.get("default")] == ["0.5"]

        # The server's default applies to its members' photos.
        retouch = await fake.slash_command(
            "retouch", {"image": fake.attachment("p.jpg", jpeg())}, user=member
        )
        await result_of(fake, retouch)
        assert [c.json["codeformer_fidelity"] for c in upstream.calls] == [0.5]


async def test_admins_only_and_the_servers_language(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    moderator, member = moderator_and_member(fake)
    async with running(fake, settings_for(tmp_path, fake, upstream)):
        _, menu = await settings_message(fake, moderator)
        await choose(fake, menu, moderator, "who", "admins")
        await choose(fake, menu, moderator, "lang", "zh")
        assert "谁可以使用：**仅管理员**" in fake.messages[int(menu["id"])]["content"]

        refused = await fake.slash_command(
            "retouch", {"image": fake.attachment("p.jpg", jpeg())}, user=member
        )
        assert await ephemeral_of(fake, refused) == "本群只有管理员可以使用我，请联系管理员。"
        assert upstream.calls == []
        allowed = await fake.slash_command(
            "retouch", {"image": fake.attachment("p.jpg", jpeg())}, user=moderator
        )
        result = await result_of(fake, allowed)
        assert result.json["embeds"][0]["title"] == "美颜完成"

        # A member's own language wins over the server's.
        chosen = await fake.slash_command("language", {"choice": "en"}, user=member)
        assert await ephemeral_of(fake, chosen) == "Done: I'll speak English with you."
        quota = await fake.slash_command("quota", user=member)
        assert (await ephemeral_of(fake, quota)).startswith("Today you've used 0 of 5")


async def test_language_and_whoami(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    user = fake.make_user("li")
    async with running(fake, settings_for(tmp_path, fake, upstream)):
        chosen = await fake.slash_command("language", {"choice": "zh"}, user=user, dm=True)
        assert await ephemeral_of(fake, chosen) == "好的，我会用中文和你交流。"
        quota = await fake.slash_command("quota", user=user, dm=True)  # an English client
        assert (await ephemeral_of(fake, quota)).startswith("今天已用 0/5 次")
        shown = await fake.slash_command("language", user=user, dm=True)
        assert await ephemeral_of(fake, shown) == "我现在用中文和你交流。请选择："
        auto = await fake.slash_command("language", {"choice": "auto"}, user=user, dm=True)
        assert (await ephemeral_of(fake, auto)).startswith("Done: I'll follow your app's")

        whoami = await fake.slash_command("whoami", user=user)
        line = await ephemeral_of(fake, whoami)
        assert line.startswith(f"Your id is `discord:{user['id']}`.")
        assert f"This chat is `discord:{fake.guild.id}`" in line


async def test_compare_is_private_and_only_for_the_requester(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    alice, bob = fake.make_user("alice2"), fake.make_user("bob")
    photo = jpeg(96, 80)
    async with running(fake, settings_for(tmp_path, fake, upstream)):
        asked = await fake.slash_command(
            "retouch", {"image": fake.attachment("p.jpg", photo)}, user=alice
        )
        result = await result_of(fake, asked)
        message = fake.messages[int(result.response["id"])]
        [compare] = [
            b["custom_id"]
            for b in message["components"][0]["components"]
            if b["custom_id"].startswith("rt:cmp:")
        ]
        other = await fake.press_button(compare, message, user=bob)
        assert await ephemeral_of(fake, other) == (
            "Only the person who sent the photo can use these buttons."
        )
        mine = await fake.press_button(compare, message, user=alice)
        [sheet] = await fake.wait_for(
            lambda c: of(mine, "POST", r"^/webhooks/")(c) and bool(c.files)
        )
        assert sheet.json["flags"] & 64 and sheet.json["content"].startswith("Before · after")
        with Image.open(io.BytesIO(sheet.files[0].data)) as image:
            assert image.size == (2 * 96 + 8, 80)
        callbacks = [c for c in fake.responses_for(mine) if c.path.endswith("/callback")]
        assert callbacks[0].json["type"] == 5 and callbacks[0].json["data"]["flags"] == 64
        assert len(upstream.calls) == 1  # nothing retouched again


def test_the_fake_refuses_components_discord_refuses() -> None:
    def button(custom_id: str, label: str = "Redo") -> JSON:
        return {"type": 2, "style": 2, "label": label, "custom_id": custom_id}

    def select(options: int, defaults: int = 1) -> JSON:
        return {
            "type": 3,
            "custom_id": "rt:set:x",
            "options": [
                {"label": f"{n}", "value": f"{n}", "default": n < defaults} for n in range(options)
            ],
        }

    def row(*items: JSON) -> JSON:
        return {"type": 1, "components": list(items)}

    check_components([row(*(button(str(n)) for n in range(5))), row(select(25))])
    refused = [
        [row(*(button(str(n)) for n in range(6)))],  # six buttons in a row
        [row(button(str(n))) for n in range(6)],  # six rows
        [row(select(1), button("b"))],  # a select shares its row
        [row(select(26))],  # too many options
        [row(select(3, defaults=2))],  # two defaults of a single choice
        [row(button("same"), button("same"))],  # one custom id twice
        [row(button("b", label="x" * 81))],
    ]
    for components in refused:
        with pytest.raises(ApiError) as error:
            check_components(components)
        assert error.value.body["code"] == 50035
