"""Hostile input, item 1: decompression bombs cost no more than the decode budget.

The default pixel cap is below Pillow's own bomb warning and is checked from the headers; every
decode (serve-api, the bots' pipeline, the command line) reserves what it costs from one budget
weighted by bytes, so concurrent bombs wait their turn; freed memory goes back after a burst.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import core.memory_budget as memory_budget
from core.errors import ImageTooLargeError
from core.formats import PreparedImage
from core.imaging import DEFAULT_LIMITS, ImageLimits, ImagePlan, plan_image, prepare_image
from core.local_backend import LocalBackend
from core.memory_budget import MemoryBudget, decode_budget
from core.pipeline import retouch_photo
from core.settings import Settings
from tests.hostile_inputs import jpeg_bomb, png_bomb
from tests.test_serve_api import body, data_url, serve


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose header claims `width` x `height` (its frame header rewritten)."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 128, 128)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_the_default_pixel_cap_is_below_pillows_bomb_warning() -> None:
    pillow = Image.MAX_IMAGE_PIXELS
    assert pillow is not None
    assert Settings.load().image_max_input_pixels <= pillow
    assert DEFAULT_LIMITS.max_input_pixels <= pillow


@pytest.mark.parametrize(
    "bomb",
    [lambda: png_bomb(9500, 9500), lambda: jpeg_claiming(9500, 9500)],
    ids=["png-90MP", "jpeg-90MP"],
)
def test_bombs_over_the_cap_are_refused_from_their_headers(bomb: Any) -> None:
    data = bomb()
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError):
        prepare_image(data, ImageLimits.from_settings(Settings.load()))
    assert time.perf_counter() - started < 1.0  # nothing was decoded


def test_a_plan_costs_what_decoding_holds() -> None:
    plan = plan_image(png_bomb(3000, 2000), ImageLimits(max_pixels=1_500_000))
    assert plan.output_size[0] * plan.output_size[1] <= 1_500_000
    assert plan.cost >= 3000 * 2000 * 4 + 4 * 1_500_000
    assert plan_image(jpeg_bomb(64, 64)).cost == 0  # passes as it is: nothing decoded


class CountingEngine:
    """A "local" backend that counts how many retouches (and decodes) overlap."""

    name = "local"

    def __init__(self, counter: Counter, inner: Any) -> None:
        self.counter = counter
        self.inner = inner

    async def retouch(self, image: PreparedImage, fidelity: float) -> bytes:
        with self.counter:
            return await self.inner.retouch(image, fidelity)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self.inner.aclose()


class Counter:
    """Counts overlapping sections across threads and tasks; keeps the highest count."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


@pytest.fixture
def decoding(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Every `ImagePlan.run` counted as a decode."""
    counter = Counter()
    real = ImagePlan.run

    def run(self: ImagePlan) -> PreparedImage:
        with counter:
            return real(self)

    monkeypatch.setattr(ImagePlan, "run", run)
    return counter


@pytest.fixture
def trims(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Each time freed memory is handed back to the system."""
    calls: list[float] = []
    real = memory_budget.release_freed_memory

    def release() -> None:
        calls.append(time.monotonic())
        real()

    monkeypatch.setattr(memory_budget, "release_freed_memory", release)
    return calls


async def test_concurrent_bombs_through_serve_api_decode_one_at_a_time(
    tmp_path: Path, decoding: Counter, trims: list[float]
) -> None:
    budget_bytes = 24_000_000  # less than one bomb costs: each runs alone
    engine = Counter()
    backend = CountingEngine(engine, LocalBackend(threads=2))
    bombs = [png_bomb(1990, 1990), jpeg_bomb(1990, 1990)] * 4
    try:
        async with serve(
            tmp_path,
            backend,
            serve_api_workers=4,
            serve_api_queue_size=8,
            image_max_input_pixels=4_000_000,
            image_max_pixels=2_000_000,
            image_decode_budget_bytes=budget_bytes,
        ) as client:
            answers = await asyncio.gather(
                *(
                    client.post("/v1/chat/completions", json=body(data_url(bomb, "image/png")))
                    for bomb in bombs
                )
            )
    finally:
        await backend.aclose()
    assert [a.status_code for a in answers] == [400] * len(bombs)
    assert {a.json()["error"]["code"] for a in answers} == {"no_face"}
    assert decoding.most == 1 and engine.most == 1
    budget = decode_budget(budget_bytes)
    assert budget.used == 0 and budget.peak <= budget_bytes
    assert trims, "freed memory was not handed back after the burst"


class Overlapping:
    """A "local" backend whose retouches wait until `together` of them run at once."""

    name = "local"

    def __init__(self, together: int) -> None:
        self.together = together
        self.inside = 0
        self.met = asyncio.Event()

    async def retouch(self, image: PreparedImage, fidelity: float) -> bytes:
        self.inside += 1
        if self.inside >= self.together:
            self.met.set()
        await asyncio.wait_for(self.met.wait(), 10)
        return image.data

    async def aclose(self) -> None:
        pass


async def test_the_bots_pipeline_shares_the_budget_and_lets_small_photos_overlap(
    decoding: Counter,
) -> None:
    photos = [png_bomb(600, 400) for _ in range(4)]
    roomy = ImageLimits(max_pixels=100_000, decode_budget_bytes=200_000_000)
    backend = Overlapping(together=4)
    results = await asyncio.gather(*(retouch_photo(backend, p, 0.3, roomy) for p in photos))
    assert len(results) == 4 and backend.met.is_set()

    tight = ImageLimits(max_pixels=100_000, decode_budget_bytes=1_000_000)
    engine = Counter()
    single = CountingEngine(engine, Overlapping(together=1))
    await asyncio.gather(*(retouch_photo(single, p, 0.3, tight) for p in photos))
    assert engine.most == 1 and decoding.most <= 4


# --- the budget itself ------------------------------------------------------------------


async def test_waiters_are_served_in_order_and_a_big_one_is_not_starved() -> None:
    budget = MemoryBudget(100)
    order: list[str] = []
    release = asyncio.Event()

    async def take(name: str, cost: int, hold: bool) -> None:
        async with budget.hold_async(cost):
            order.append(name)
            if hold:
                await release.wait()

    first = asyncio.create_task(take("first", 60, hold=True))
    await asyncio.sleep(0)
    big = asyncio.create_task(take("big", 100, hold=False))
    await asyncio.sleep(0)
    small = asyncio.create_task(take("small", 10, hold=False))  # would fit now, but waits
    await asyncio.sleep(0)
    assert order == ["first"]
    release.set()
    await asyncio.gather(first, big, small)
    assert order == ["first", "big", "small"]
    assert budget.used == 0


async def test_cancelling_a_waiter_gives_its_place_up() -> None:
    budget = MemoryBudget(10)
    async with budget.hold_async(10):
        waiting = asyncio.create_task(budget.hold_async(5).__aenter__())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert budget.used == 0
    async with budget.hold_async(10):
        assert budget.used == 10


def test_threads_and_tasks_share_one_budget() -> None:
    budget = MemoryBudget(10)
    inside = Counter()

    def work() -> None:
        with budget.hold(8), inside:
            time.sleep(0.01)

    async def main() -> None:
        async def task() -> None:
            async with budget.hold_async(8):
                with inside:
                    await asyncio.to_thread(time.sleep, 0.01)

        await asyncio.gather(*(asyncio.to_thread(work) for _ in range(3)), task(), task())

    asyncio.run(main())
    assert inside.most == 1 and budget.used == 0 and budget.peak <= 10


def test_a_reservation_larger_than_the_budget_runs_alone() -> None:
    budget = MemoryBudget(10)
    with budget.hold(1_000_000):
        assert budget.used == 10
    assert budget.used == 0
