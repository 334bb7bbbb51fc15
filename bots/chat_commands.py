"""What both bots answer alike: /quota, /fidelity, /language, /whoami, /stats, /grant, /forget,
and button presses.

Each method returns the line to send. An adapter only turns its platform's objects into the
arguments (who asked, in which language, with what) and sends the line back its own way.
"""

from __future__ import annotations

from bots import messages as m
from core.captions import parse_fidelity
from core.errors import FidelityError
from core.fidelity import REDO_CHOICES, check_fidelity, check_redo_choice
from core.jobs import Job, Platform
from core.platform_ids import parse_platform_id
from core.preferences import Language
from core.service import RetouchService

RESET_WORDS = frozenset({"clear", "reset", "default", "清除", "默认"})
"""`/fidelity clear` and its synonyms go back to the bot's default."""
AUTO_WORDS = frozenset({"auto", "automatic", "default", "reset", "自动"})
"""`/language auto` and its synonyms go back to the client's (or the group's) language."""
LANGUAGE_WORDS: dict[str, Language] = {
    "en": "en",
    "english": "en",
    "zh": "zh",
    "chinese": "zh",
    "中文": "zh",
}


def read_fidelity(value: str | float) -> float:
    """A fidelity given to a command: text by caption parsing, a number by the one range rule."""
    return parse_fidelity(value) if isinstance(value, str) else check_fidelity(value)


def redo_choice(value: str) -> float | None:
    """The fidelity a redo button carries, when it is one the buttons offer; else None."""
    try:
        return check_redo_choice(float(value))
    except (ValueError, FidelityError):
        return None


class ChatCommands:
    """The shared answers for one platform's users; user ids are the platform's, as text."""

    def __init__(
        self, service: RetouchService, platform: Platform, default_fidelity: float
    ) -> None:
        self.service = service
        self.platform: Platform = platform
        self.default_fidelity = default_fidelity

    async def quota(self, user: str, lang: m.Lang) -> str:
        """`/quota`: used, left, the reset time, and what the user bought."""
        status = await self.service.quota_status(self.platform, user)
        return m.quota_line(status, lang, await self.service.purchases_of(self.platform, user))

    async def language(
        self,
        user: str,
        lang: m.Lang,
        choice: str | None = None,
        *,
        chat: str | None = None,
        client: str | None = None,
    ) -> str:
        """`/language [en|zh|auto]`: show the language, or save (or clear) the user's choice.

        The answer is in the language chosen; after `auto`, in the one that applies again (the
        group's, `chat`, else the app's, `client`).
        """
        word = (choice or "").strip().lower()
        if not word:
            return m.text("language_show", lang, language=m.text(f"lang:{lang}", lang))
        if word in AUTO_WORDS:
            await self.service.set_language(self.platform, user, None)
            now = await self.service.preferences.language(self.platform, user, chat, client)
            return m.text("language_auto", now)
        chosen = LANGUAGE_WORDS.get(word)
        if chosen is None:
            return m.text("language_usage", lang)
        await self.service.set_language(self.platform, user, chosen)
        return m.text("language_saved", chosen)

    def whoami(self, user: str, lang: m.Lang, chat: str | None = None) -> str:
        """`/whoami`: the user's id as `ADMIN_IDS` takes it (and the group's, in a group)."""
        line = m.text("whoami", lang, user=f"{self.platform}:{user}")
        if chat is not None:
            line += m.text("whoami_chat", lang, chat=f"{self.platform}:{chat}")
        return line

    async def fidelity(
        self, user: str, lang: m.Lang, value: str | float | None = None, *, reset: bool = False
    ) -> str:
        """`/fidelity`: show the user's default, save `value`, or clear it (`reset`, `clear`)."""
        if isinstance(value, str):
            value = value.strip() or None
            reset = reset or (value or "").lower() in RESET_WORDS
        if reset:
            await self.service.set_default_fidelity(self.platform, user, None)
            return m.text("fidelity_cleared", lang, fidelity=self.default_fidelity)
        if value is None:
            saved = (await self.service.user_settings(self.platform, user)).default_fidelity
            if saved is not None:
                return m.text("fidelity_show", lang, fidelity=saved, source="")
            source = m.text("fidelity_source_default", lang)
            return m.text("fidelity_show", lang, fidelity=self.default_fidelity, source=source)
        try:
            chosen = read_fidelity(value)
        except FidelityError as exc:
            return m.rejection(exc, lang)
        await self.service.set_default_fidelity(self.platform, user, chosen)
        return m.text("fidelity_saved", lang, fidelity=chosen)

    async def stats(self, caller: str, lang: m.Lang) -> str:
        """`/stats`, for admins (checked on every call)."""
        if not self.service.is_admin(self.platform, caller):
            return m.text("admin_only", lang)
        stats = await self.service.stats()
        purchases = None
        if self.service.settings.payments_stars_packs:
            purchases = await self.service.purchases_today()
        queued, running = self.service.queue_depth, self.service.running_count
        return m.stats_line(stats, queued, running, lang, purchases)

    async def grant(
        self, caller: str, lang: m.Lang, user: str | None, credits: str | int | None
    ) -> str:
        """`/grant <user> <n>`, for admins: `user` is `platform:id`, or an id on this platform."""
        if not self.service.is_admin(self.platform, caller):
            return m.text("admin_only", lang)
        who = parse_platform_id(user, default=self.platform) if user is not None else None
        amount = _integer(credits)
        if who is None or amount is None:
            return m.text("grant_usage", lang)
        balance = await self.service.grant(*who, amount)
        return m.text("grant_done", lang, user=f"{who[0]}:{who[1]}", credits=balance)

    async def forget(self, user: str, confirmed: bool, lang: m.Lang) -> str:
        """The answer to /forget's question: delete what the bot keeps about `user`, or keep it."""
        if not confirmed:
            return m.text("forget_kept", lang)
        count = await self.service.forget(self.platform, user)
        return m.text("forget_done", lang, jobs=count)

    async def own_job(self, job_id: str, presser: str, lang: m.Lang) -> Job | str:
        """The job a button names, when the presser's own; else the line saying why not."""
        job = await self.service.job_of(self.platform, job_id)
        if job is None or job.erased:
            return m.text("job_gone", lang)
        if job.user_id != presser:
            return m.text("not_yours", lang)
        return job

    async def redo(
        self, job_id: str, presser: str, choice: str, lang: m.Lang
    ) -> tuple[Job, float] | str:
        """A redo button's job and fidelity; refused, costing nothing, unless it is offered."""
        fidelity = redo_choice(choice)
        if fidelity is None:
            choices = ", ".join(f"{value:g}" for value in REDO_CHOICES)
            return m.text("redo_not_offered", lang, choices=choices)
        job = await self.own_job(job_id, presser, lang)
        return job if isinstance(job, str) else (job, fidelity)


def _integer(value: str | int | None) -> int | None:
    if isinstance(value, int) or value is None:
        return value
    digits = value.strip().removeprefix("-")
    return int(value) if digits.isascii() and digits.isdigit() else None
