"""Compare: the before/after image under a result, the photo as sent beside it retouched.

Free, and only for the person who asked, while the result is kept (`COMPARE_ENABLED`, until
`JOBS_RESULT_MAX_AGE_HOURS`). The "before" is fetched again from the platform by the job's input
reference and passes the same checks as any input (`prepare_image`: sniffed, bombs refused,
turned upright); the "after" is the stored result. Both bots share this; they only send it.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from PIL import Image

from bots import messages as m
from bots.chat_commands import ChatCommands
from core.errors import RetouchError
from core.imaging import ImageLimits, prepare_image
from core.jobs import Job
from core.service import RetouchService

HALF_HEIGHT = 1280
"""Each half is at most this tall (the whole stays a photo every chat shows)."""
GAP = 8
BACKGROUND = (255, 255, 255)
QUALITY = 90


@dataclass(frozen=True, slots=True)
class Comparison:
    """A before/after image ready to send, and the job it shows."""

    job: Job
    image: bytes


def side_by_side(before: bytes, after: bytes, limits: ImageLimits) -> bytes:
    """One JPEG with `before` on the left and `after` on the right, at the same height.

    CPU-bound: run it in a thread. `before` is untrusted and checked like any input.
    """
    upright = prepare_image(before, limits).data
    with Image.open(io.BytesIO(upright)) as left_file, Image.open(io.BytesIO(after)) as right_file:
        left, right = left_file.convert("RGB"), right_file.convert("RGB")
    height = min(left.height, right.height, HALF_HEIGHT)
    left, right = _to_height(left, height), _to_height(right, height)
    sheet = Image.new("RGB", (left.width + GAP + right.width, height), BACKGROUND)
    sheet.paste(left, (0, 0))
    sheet.paste(right, (left.width + GAP, 0))
    out = io.BytesIO()
    sheet.save(out, format="JPEG", quality=QUALITY, optimize=True)
    return out.getvalue()


def _to_height(image: Image.Image, height: int) -> Image.Image:
    if image.height == height:
        return image
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, height), Image.Resampling.LANCZOS)


class Comparisons:
    """Builds the before/after of a job for whoever pressed Compare, if it is theirs."""

    def __init__(
        self,
        service: RetouchService,
        commands: ChatCommands,
        fetch_input: Callable[[Job], Awaitable[bytes]],
    ) -> None:
        self.service = service
        self.commands = commands
        self.fetch_input = fetch_input

    async def check(self, job_id: str, presser: str, lang: m.Lang) -> Job | str:
        """The job, when it is the presser's own and its result is still kept; else why not."""
        job = await self.commands.own_job(job_id, presser, lang)
        if isinstance(job, str):
            return job
        if job.state != "done" or not await self.service.results.exists(job.result_path):
            return m.text("compare_gone", lang)
        return job

    async def build(self, job: Job, lang: m.Lang) -> Comparison | str:
        """The before/after of a checked job; the line saying why not if it can't be made."""
        after = await self.service.results.load(job.result_path or "")
        if after is None:
            return m.text("compare_gone", lang)
        try:
            before = await self.fetch_input(job)
            image = await asyncio.to_thread(side_by_side, before, after, self.service.limits)
        except RetouchError:
            return m.text("compare_gone", lang)
        return Comparison(job, image)
