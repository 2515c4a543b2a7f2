"""The micro-batcher: merging, chunking, ordering, fairness, failures, limits, cancellation, shutdown, loops."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from mistral_gateway.engines.base import EngineBusy, EngineError
from mistral_gateway.engines.batching import MicroBatcher


class Recorder:
    """A batch function that records each call's items and which thread ran it; optionally slow, failing or held.

    ``started`` is set when a call begins; with a ``gate``, calls wait for the test to set it (the worker is
    provably busy meanwhile, no sleeping to get there)."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()
        self.delay = delay
        self.fail_on = fail_on
        self.started = threading.Event()
        self.gate: threading.Event | None = None

    def __call__(self, items: list[str]) -> list[str]:
        self.threads.add(threading.current_thread().name)
        self.calls.append(list(items))
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10)  # bounded: a test that forgets to open it fails instead of hanging
        if self.delay:
            time.sleep(self.delay)  # slow work is the behaviour under test: requests pile up meanwhile
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"cannot process {self.fail_on!r}")
        return [item.upper() for item in items]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder(delay=0.02)


@pytest.fixture
def batcher(recorder: Recorder) -> Iterator[MicroBatcher[str, str]]:
    b: MicroBatcher[str, str] = MicroBatcher(recorder, max_batch=8, max_wait=0.005, max_queued=64, name="test-batcher")
    yield b
    b.close()


def test_results_come_back_in_order(batcher: MicroBatcher[str, str], recorder: Recorder) -> None:
    assert asyncio.run(batcher.run(["a", "b", "c"])) == ["A", "B", "C"]
    assert asyncio.run(batcher.run([])) == []
    assert recorder.threads == {"test-batcher"}  # never the event loop's thread


def test_concurrent_requests_share_calls(batcher: MicroBatcher[str, str], recorder: Recorder) -> None:
    async def main() -> list[list[str]]:
        return await asyncio.gather(*[batcher.run([f"t{i}"]) for i in range(20)])

    results = asyncio.run(main())
    assert results == [[f"T{i}"] for i in range(20)]
    assert len(recorder.calls) < 20 / 2  # 8 per call at most: 3 calls when perfectly packed
    assert all(len(call) <= 8 for call in recorder.calls)
    assert batcher.stats.calls == len(recorder.calls) and batcher.stats.items == 20 and batcher.stats.largest <= 8


def test_large_requests_are_split_and_reassembled(batcher: MicroBatcher[str, str], recorder: Recorder) -> None:
    items = [f"x{i}" for i in range(30)]
    assert asyncio.run(batcher.run(items)) == [s.upper() for s in items]
    assert [len(c) for c in recorder.calls] == [8, 8, 8, 6]


def test_a_small_request_does_not_wait_for_a_whole_large_one(batcher: MicroBatcher[str, str],
                                                              recorder: Recorder) -> None:
    finished: list[str] = []

    async def tracked(name: str, items: list[str]) -> None:
        await batcher.run(items)
        finished.append(name)

    async def main() -> None:
        large = asyncio.create_task(tracked("large", [f"l{i}" for i in range(80)]))  # 10 calls
        await asyncio.to_thread(recorder.started.wait, 10)  # the large one is being computed
        await tracked("small", ["s"])
        await large

    asyncio.run(main())
    assert finished == ["small", "large"]
    position = next(i for i, call in enumerate(recorder.calls) if "s" in call)
    assert position < 5


def test_a_failure_reaches_every_caller_of_that_call_and_no_other(recorder: Recorder) -> None:
    recorder.fail_on = "bad"
    b: MicroBatcher[str, str] = MicroBatcher(recorder, max_batch=8, max_wait=0.05, name="failing")
    names = ["a", "b", "bad", "c"]

    async def main() -> list[object]:
        return await asyncio.gather(*[b.run([name]) for name in names], return_exceptions=True)

    try:
        outcomes = dict(zip(names, asyncio.run(main()), strict=True))
        doomed = next(call for call in recorder.calls if "bad" in call)
        assert len(doomed) >= 2  # "bad" shared its call with at least one other request
        for name, outcome in outcomes.items():
            if name in doomed:
                assert isinstance(outcome, ValueError), name  # same call, same fate
            else:
                assert outcome == [name.upper()], name
        assert asyncio.run(b.run(["fine"])) == ["FINE"]  # the worker survived
    finally:
        b.close()


def test_too_much_waiting_is_busy(recorder: Recorder) -> None:
    recorder.gate = gate = threading.Event()
    b: MicroBatcher[str, str] = MicroBatcher(recorder, max_batch=4, max_wait=0.0, max_queued=8, name="tight")

    async def main() -> list[object]:
        first = asyncio.create_task(b.run(["a"] * 4))
        await asyncio.to_thread(recorder.started.wait, 10)  # the thread is now busy with the first call
        rest = [asyncio.create_task(b.run([x] * 4)) for x in "bcd"]
        await asyncio.sleep(0)  # no time passes: each task's first step submits its items (or is refused)
        gate.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    try:
        results = asyncio.run(main())
    finally:
        gate.set()
        b.close()
    busy = [r for r in results if isinstance(r, EngineBusy)]
    assert len(busy) == 1 and busy[0].retry_after > 0
    assert "limit is 8" in str(busy[0])
    assert results[0] == ["A"] * 4


def test_cancelled_requests_are_skipped(recorder: Recorder) -> None:
    recorder.gate = gate = threading.Event()
    b: MicroBatcher[str, str] = MicroBatcher(recorder, max_batch=2, max_wait=0.0, name="cancel")

    async def main() -> None:
        first = asyncio.create_task(b.run(["first"]))
        await asyncio.to_thread(recorder.started.wait, 10)  # the only worker holds "first"
        doomed = asyncio.create_task(b.run(["doomed", "doomed"]))
        await asyncio.sleep(0)  # no time passes: the task's first step queues its items
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        gate.set()
        await first
        assert await b.run(["after"]) == ["AFTER"]

    try:
        asyncio.run(main())
    finally:
        gate.set()
        b.close()
    assert ["doomed", "doomed"] not in recorder.calls


def test_serves_several_event_loops_and_closes(batcher: MicroBatcher[str, str]) -> None:
    assert asyncio.run(batcher.run(["one"])) == ["ONE"]
    assert asyncio.run(batcher.run(["two"])) == ["TWO"]  # a new loop: the same thread still answers
    results: list[list[str]] = []
    thread = threading.Thread(target=lambda: results.append(asyncio.run(batcher.run(["three"]))))
    thread.start()
    thread.join()
    assert results == [["THREE"]]
    batcher.close()
    assert not any(t.name == "test-batcher" for t in threading.enumerate())
    with pytest.raises(EngineError, match="closed"):
        asyncio.run(batcher.run(["late"]))


def test_rejects_nonsense_limits(recorder: Recorder) -> None:
    with pytest.raises(ValueError):
        MicroBatcher(recorder, max_batch=0)
    with pytest.raises(ValueError):
        MicroBatcher(recorder, max_batch=8, max_queued=4)


def test_workers_share_the_load_fairly() -> None:
    first, second = Recorder(delay=0.03), Recorder(delay=0.03)
    b: MicroBatcher[str, str] = MicroBatcher([first, second], max_batch=32, max_wait=0.005, name="pair")

    async def main() -> list[list[str]]:
        return await asyncio.gather(*[b.run([f"t{i}"]) for i in range(32)])

    try:
        assert asyncio.run(main()) == [[f"T{i}"] for i in range(32)]
        assert b.workers == 2 and first.calls and second.calls  # both replicas worked
        assert first.threads | second.threads == {"pair-0", "pair-1"}
        calls = first.calls + second.calls
        assert max(len(c) for c in calls) <= 16  # a fair share of 32 outstanding between 2 workers
        assert len(calls) < 32 / 2
    finally:
        b.close()


def test_a_large_request_runs_on_every_worker_at_once() -> None:
    running: list[int] = []
    active = 0
    lock = threading.Lock()
    all_busy = threading.Event()

    def slow(items: list[str]) -> list[str]:
        nonlocal active
        with lock:
            active += 1
            running.append(active)
            if active == 3:
                all_busy.set()
        all_busy.wait(10)  # the first calls stay until every worker has one (bounded: no hang if they never do)
        with lock:
            active -= 1
        return items

    b: MicroBatcher[str, str] = MicroBatcher([slow, slow, slow], max_batch=4, max_wait=0.0, name="trio")
    try:
        items = [str(i) for i in range(40)]
        assert asyncio.run(b.run(items)) == items  # 10 chunks, up to 4 in flight, in order
        assert max(running) == 3
    finally:
        b.close()


def test_workers_waiting_for_company_never_lose_a_job() -> None:
    """Workers in their wait window release the lock; another may drain the queue meanwhile (a real race)."""
    recorders = [Recorder(delay=0.002) for _ in range(3)]  # the delays and jitter below make the race: keep them
    b: MicroBatcher[str, str] = MicroBatcher(recorders, max_batch=4, max_wait=0.01, name="race")

    async def client(k: int) -> None:
        for i in range(15):
            assert await b.run([f"{k}-{i}"]) == [f"{k}-{i}".upper()]
            await asyncio.sleep(0.001 * (k % 3))

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(*[client(k) for k in range(12)]), timeout=30)

    try:
        asyncio.run(main())
        assert sum(len(c) for r in recorders for c in r.calls) == 12 * 15
        assert sum(t.name.startswith("race") and t.is_alive() for t in threading.enumerate()) == 3
    finally:
        b.close()
