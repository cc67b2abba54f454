"""The statement lane: order, failures, and how soon the next step starts."""

from __future__ import annotations

import asyncio
import gc
import itertools

import pytest

from service.actions.lane import Lane


class _Ticks:
    """A stand-in for the decider: works in slices, pausing once per slice."""

    def __init__(self) -> None:
        self.now = 0
        self.stopped = False

    async def run(self) -> None:
        while not self.stopped:
            self.now += 1
            await asyncio.sleep(0)


async def test_steps_run_in_order_one_at_a_time() -> None:
    lane = Lane()
    log: list[str] = []

    def step(name: str) -> object:
        async def run() -> str:
            log.append(f"start {name}")
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            log.append(f"end {name}")
            return name

        return run

    futures = [lane.run(step(name)) for name in "abc"]
    assert not lane.idle
    assert [await f for f in futures] == ["a", "b", "c"]
    await lane.drain()
    assert lane.idle
    assert log == ["start a", "end a", "start b", "end b", "start c", "end c"]


async def test_a_step_queued_after_the_lane_went_idle_runs_too() -> None:
    lane = Lane()
    assert await lane.run(lambda: asyncio.sleep(0, "first")) == "first"
    await lane.drain()
    assert lane.idle
    assert await lane.run(lambda: asyncio.sleep(0, "again")) == "again"


async def test_the_next_step_starts_in_the_turn_the_last_one_ends() -> None:
    """While the decider pauses once per slice, a step that ends lets the next one go out
    before the decider's next slice: the connection waits for no extra slice."""
    ticks = _Ticks()
    decider = asyncio.ensure_future(ticks.run())
    lane = Lane()
    spans: list[tuple[int, int]] = []

    async def step() -> None:
        start = ticks.now
        for _ in range(3):  # a statement's round trip: a few turns of the loop
            await asyncio.sleep(0)
        spans.append((start, ticks.now))

    for _ in range(5):
        lane.run(step)
    await lane.drain()
    ticks.stopped = True
    await decider
    gaps = [nxt[0] - prev[1] for prev, nxt in itertools.pairwise(spans)]
    assert gaps == [0, 0, 0, 0]


async def test_a_failure_fails_every_later_step_with_the_same_error() -> None:
    lane = Lane()
    ran: list[str] = []
    error = ValueError("constraint")

    async def ok(name: str) -> str:
        ran.append(name)
        return name

    async def boom() -> None:
        ran.append("boom")
        raise error

    first = lane.run(lambda: ok("first"))
    failing = lane.run(boom)
    later = [lane.run(lambda: ok("later")) for _ in range(2)]
    assert await first == "first"
    with pytest.raises(ValueError) as raised:
        await failing
    assert raised.value is error
    for future in later:
        with pytest.raises(ValueError) as raised:
            await future
        assert raised.value is error
    assert ran == ["first", "boom"]  # nothing after the failure ran
    with pytest.raises(ValueError):
        await lane.drain()
    await lane.settle()  # ignores it


async def test_a_failed_step_nobody_awaits_is_not_reported_as_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lane = Lane()

    async def boom() -> None:
        raise RuntimeError("lost?")

    lane.run(boom)
    lane.run(lambda: asyncio.sleep(0))
    await lane.settle()
    gc.collect()  # an unretrieved exception is logged when its future is collected
    await asyncio.sleep(0)
    assert "exception was never retrieved" not in caplog.text


async def test_settle_waits_for_what_is_running() -> None:
    lane = Lane()
    finished: list[int] = []

    async def slow(i: int) -> None:
        await asyncio.sleep(0.01)
        finished.append(i)

    lane.run(lambda: slow(1))
    lane.run(lambda: slow(2))
    await lane.settle()
    assert finished == [1, 2]
    assert lane.idle
