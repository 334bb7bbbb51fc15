"""Crash injection for tests (`JOBS_CRASH_AT=<point>[#n]`): the process SIGKILLs itself there.

The named points are every job state a transition commits (`state:<state>`) and the steps
between a job's I/O and an update's arrival; this is their one home. A point fires the n-th time
it is reached (the first by default), so a test can kill the process at any instant it names and
check what a restart makes of it. Unset, as in production, `crash_point` does nothing.
"""

from __future__ import annotations

import os
import signal
from typing import Final

from core.jobs import JOB_STATES

IO_POINTS: Final = (
    "update_stored",  # an incoming update is in the inbox, not yet confirmed to the platform
    "offset_confirmed",  # the platform was told the updates up to here arrived
    "input_fetched",  # the job's photo was downloaded from the platform
    "upstream_answered",  # the upstream answered with the result's URL, not yet downloaded
    "result_downloaded",  # the result's bytes are here, not yet stored
    "upload_sent",  # the platform accepted the result's upload, not yet recorded
    "sent_recorded",  # the sent message's id is recorded, the job not yet `done`
)
CRASH_POINTS: Final = frozenset({*(f"state:{state}" for state in JOB_STATES), *IO_POINTS})
"""Every point `JOBS_CRASH_AT` may name."""

_armed: tuple[str, int] | None = None
_seen = 0


def parse_crash_at(spec: str) -> tuple[str, int] | None:
    """`point` or `point#n` as (point, n); None for ""; ValueError naming what is wrong."""
    spec = spec.strip()
    if not spec:
        return None
    point, _, count = spec.partition("#")
    if point not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {point!r}; one of {', '.join(sorted(CRASH_POINTS))}")
    n = int(count) if count.isdigit() else 0 if count else 1
    if n < 1:
        raise ValueError(f"the count after # must be a whole number from 1, not {count!r}")
    return point, n


def arm(spec: str) -> None:
    """Kill the process at the point `spec` names (`parse_crash_at`); "" disarms."""
    global _armed, _seen
    _armed, _seen = parse_crash_at(spec), 0


def crash_point(point: str) -> None:
    """The process reached `point`: SIGKILL it here if that is the armed point's n-th time."""
    global _seen
    assert point in CRASH_POINTS, point
    if _armed is None or _armed[0] != point:
        return
    _seen += 1
    if _seen >= _armed[1]:
        os.kill(os.getpid(), signal.SIGKILL)
