"""Group membership for the fake Bot API: `getChatMember`, and messages anonymous admins send.

Written from the Bot API's documentation: `getChatMember(chat_id, user_id)` answers a
`ChatMember` whose `status` is `creator`, `administrator`, `member`, `restricted`, `left` or
`kicked`; an administrator carries every `can_*` right the API lists; a user id Telegram does not
know is "user not found". A user who wrote in a chat is its member unless `set` says otherwise;
one seen only elsewhere has `left`. An anonymous admin's message comes `from` @GroupAnonymousBot
with `sender_chat` set to the group itself.

    fake.members.set(GROUP, ALICE, "administrator")
    fake.members.send_as_group(GROUP, "/settings")
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from tests.fake_telegram import JSON, Call, User, bad_request

if TYPE_CHECKING:
    from tests.fake_telegram import FakeTelegram

ANONYMOUS_ADMIN = User(
    1087968824, "Group", username="GroupAnonymousBot", language_code=None, is_bot=True
)
STATUSES = frozenset({"creator", "administrator", "member", "restricted", "left", "kicked"})
ADMIN_RIGHTS = (
    "can_be_edited",
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
)


class ChatMembers:
    """Who is what in the fake's chats; registered in `FakeTelegram`'s handler table."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.fake = fake
        self._status: dict[tuple[int, int], tuple[str, bool]] = {}

    def handlers(self) -> dict[str, Any]:
        return {"getChatMember": self.get_chat_member}

    def set(
        self,
        chat_id: int,
        user: User | int,
        status: str = "administrator",
        *,
        anonymous: bool = False,
    ) -> None:
        """Make `user` a `status` of `chat_id` (an admin, by default)."""
        if status not in STATUSES:
            raise ValueError(f"unknown chat member status {status!r}")
        user_id = user.id if isinstance(user, User) else user
        self._status[(chat_id, user_id)] = (status, anonymous)

    def send_as_group(self, chat_id: int, text: str) -> JSON:
        """An anonymous admin of `chat_id` sends `text`: from @GroupAnonymousBot, as the chat."""
        message = self.fake.send_text(chat_id, ANONYMOUS_ADMIN, text)
        # The update is queued already: give it (and the stored message) its sender_chat.
        chat = copy.deepcopy(self.fake.chats[chat_id])
        for update in self.fake.pending_updates:
            if update.get("message", {}).get("message_id") == message["message_id"]:
                update["message"]["sender_chat"] = chat
        stored = self.fake.message(chat_id, message["message_id"])
        assert stored is not None
        stored.message["sender_chat"] = chat
        return {**message, "sender_chat": chat}

    async def get_chat_member(self, call: Call) -> JSON:
        chat = self.fake._bot_chat(call.params.get("chat_id"))
        user_id = call.params.get("user_id")
        if not isinstance(user_id, int):
            raise bad_request("invalid user_id specified")
        person = self._user(user_id)
        if person is None:
            raise bad_request("user not found")
        chat_id = int(chat["id"])
        if chat["type"] == "private":
            if chat_id != user_id:
                raise bad_request("user not found")
            return {"status": "member", "user": person}
        status, anonymous = self._status.get(
            (chat_id, user_id), (self._default(chat_id, user_id), False)
        )
        member: JSON = {"status": status, "user": person}
        if status == "creator":
            member["is_anonymous"] = anonymous
        elif status == "administrator":
            member.update({right: right != "can_be_edited" for right in ADMIN_RIGHTS})
            member["is_anonymous"] = anonymous
        elif status == "restricted":
            member.update({"is_member": True, "until_date": 0, "can_send_messages": False})
        elif status == "kicked":
            member["until_date"] = 0
        return member

    def _default(self, chat_id: int, user_id: int) -> str:
        wrote = any(
            not m.from_bot and m.message.get("from", {}).get("id") == user_id
            for m in self.fake.history(chat_id)
        )
        return "member" if wrote else "left"

    def _user(self, user_id: int) -> JSON | None:
        """The user as Telegram knows them: from a message of theirs, or a chat they are in."""
        if user_id == self.fake.bot_user["id"]:
            return self.fake.bot_user_short
        for chat_id in self.fake.chats:
            for record in self.fake.history(chat_id):
                sender = record.message.get("from", {})
                if not record.from_bot and sender.get("id") == user_id:
                    return dict(sender)
        if any(user == user_id for _, user in self._status):
            return User(user_id).to_dict()
        return None
