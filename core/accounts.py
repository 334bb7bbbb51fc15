"""The per-user side of the service: jobs looked up for a button, quotas, saved settings (a
user's and a group chat's), grants, purchases and stats. A base of `RetouchService`, apart
because none of it runs a job."""

from __future__ import annotations

from collections.abc import Callable

from core.fidelity import check_fidelity
from core.jobs import Job
from core.packs import Pack
from core.payments import Payments
from core.preferences import Language, Preferences
from core.quota import QuotaPolicy, QuotaStatus
from core.store import ChatSettings, JobStore, PurchaseTotals, Stats, UserSettings


class UserAccounts:
    """What the adapters read and change about users, through the store and the quota policy."""

    def __init__(self, store: JobStore, policy: QuotaPolicy, clock: Callable[[], float]) -> None:
        self.store = store
        self.policy = policy
        self.preferences = Preferences(store)
        self._clock = clock

    def payments(self, packs: list[Pack]) -> Payments:
        """Credits sold in `packs`, kept in this service's store under its quota policy."""
        return Payments(self.store, self.policy, packs, clock=self._clock)

    async def job_of(self, platform: str, job_id: str) -> Job | None:
        """The job `job_id` if it belongs to `platform` (a button's payload names it)."""
        job = await self.store.get_job(job_id)
        return job if job is not None and job.platform == platform else None

    async def recent_jobs_of(self, platform: str, user_id: str, limit: int) -> list[Job]:
        """The user's `limit` newest jobs, newest first."""
        return await self.store.recent_jobs(limit, user=(platform, user_id))

    async def unfinished_jobs_where(
        self, platform: str, reply_key: str, reply_value: object
    ) -> list[Job]:
        """The platform's unfinished jobs whose reply target has `reply_key == reply_value`.

        For example the jobs of one Discord interaction, which a Cancel button stops together.
        """
        return [
            job
            for job in await self.store.unfinished_jobs()
            if job.platform == platform and job.reply_target.get(reply_key) == reply_value
        ]

    async def quota_left(self, platform: str, user_id: str) -> int | None:
        """Jobs the user has left today, or None when no limit applies (no store read then)."""
        user_limit, _ = self.policy.limits_for(platform, user_id, "", False)
        if user_limit is None:
            return None
        return (await self.quota_status(platform, user_id)).left

    async def quota_status(self, platform: str, user_id: str) -> QuotaStatus:
        now = self._clock()
        usage = await self.store.usage(platform, user_id, self.policy.day_key(now))
        return self.policy.status(usage, now, platform=platform, user_id=user_id)

    async def user_settings(self, platform: str, user_id: str) -> UserSettings:
        return await self.store.get_user_settings(platform, user_id)

    async def set_default_fidelity(
        self, platform: str, user_id: str, fidelity: float | None
    ) -> None:
        """Save the user's default (checked by the one fidelity rule); None forgets it."""
        saved = None if fidelity is None else check_fidelity(fidelity)
        await self.store.set_default_fidelity(platform, user_id, saved)

    async def set_language(self, platform: str, user_id: str, language: Language | None) -> None:
        """Save the user's language; None goes back to the chat's or the client's."""
        await self.store.set_locale(platform, user_id, language)

    async def chat_settings(self, platform: str, chat_id: str) -> ChatSettings:
        return await self.store.get_chat_settings(platform, chat_id)

    async def set_chat_setting(
        self, platform: str, chat_id: str, field: str, value: object
    ) -> ChatSettings:
        """Save one of a group's settings (its admins are checked by the adapter)."""
        return await self.store.set_chat_setting(platform, chat_id, field, value)

    async def grant(self, platform: str, user_id: str, credits: int) -> int:
        return await self.store.grant(platform, user_id, credits)

    async def purchases_of(self, platform: str, user_id: str) -> PurchaseTotals:
        """What the user bought (refunds apart)."""
        return await self.store.purchase_totals(user=(platform, user_id))

    async def stats(self) -> Stats:
        return await self.store.stats(self.policy.day_key(self._clock()))

    async def purchases_today(self) -> PurchaseTotals:
        return await self.store.purchase_totals(day=self.policy.day_key(self._clock()))

    def is_admin(self, platform: str, user_id: str) -> bool:
        """Checked on every admin command: `ADMIN_IDS` holds `platform:id`."""
        return self.policy.is_admin(platform, user_id)
