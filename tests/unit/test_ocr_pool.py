"""The OCR engine's page scheduling without a model: pages come back in order, a request never has more than
``workers`` pages on the pool, a page's failure becomes an engine error (input errors stay input errors), and a
cancelled request stops starting pages."""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from mistral_gateway.engines.base import EngineError, EngineUnavailable, InvalidInput, OcrPage
from mistral_gateway.engines.ocr import RapidOcrEngine


@pytest.fixture
def engine() -> Iterator[RapidOcrEngine]:
    bare = object.__new__(RapidOcrEngine)  # the scheduler only: no model behind it
    bare.workers = 2
    bare._pool = cf.ThreadPoolExecutor(max_workers=4)  # more threads than workers: the window must bound it
    yield bare
    bare.close()


def page(index: int) -> OcrPage:
    return OcrPage(index, f"page {index}", (), 10, 10, 72)


def test_pages_come_back_in_order_with_at_most_workers_running(engine: RapidOcrEngine) -> None:
    lock, running, peak = threading.Lock(), [0], [0]

    def task(index: int) -> Callable[[], OcrPage]:
        def run() -> OcrPage:
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.01 * (5 - index % 5))  # later pages finish first
            with lock:
                running[0] -= 1
            return page(index)
        return run

    pages = engine._run([task(i) for i in range(10)], threading.Event())
    assert [p.index for p in pages] == list(range(10))
    assert peak[0] == 2


def test_a_failing_page_is_an_engine_error_and_invalid_input_stays_one(engine: RapidOcrEngine) -> None:
    def broken() -> OcrPage:
        raise ValueError("bug")

    def refused() -> OcrPage:
        raise InvalidInput("page 1 of the PDF cannot be read")

    with pytest.raises(EngineError, match="failed on a page: ValueError") as err:
        engine._run([lambda: page(0), broken], threading.Event())
    assert not isinstance(err.value, InvalidInput)
    with pytest.raises(InvalidInput, match="page 1 of the PDF"):
        engine._run([lambda: page(0), refused], threading.Event())


def test_a_cancelled_request_starts_no_more_pages(engine: RapidOcrEngine) -> None:
    cancel, started = threading.Event(), []

    def task(index: int) -> Callable[[], OcrPage]:
        def run() -> OcrPage:
            started.append(index)
            cancel.set()  # the client went away while the first pages ran
            return page(index)
        return run

    with pytest.raises(EngineError, match="cancelled"):
        engine._run([task(i) for i in range(10)], cancel)
    assert len(started) <= engine.workers


def test_a_stopped_engine_is_unavailable(engine: RapidOcrEngine) -> None:
    engine.close()
    with pytest.raises(EngineUnavailable, match="shutting down"):
        engine._run([lambda: page(0)], threading.Event())


def test_a_long_document_does_not_hold_the_pool_against_a_later_request() -> None:
    bare = object.__new__(RapidOcrEngine)
    bare.workers = 1
    bare._pool = cf.ThreadPoolExecutor(max_workers=1)
    finished: list[str] = []
    first_started = threading.Event()

    def task(name: str) -> Callable[[], OcrPage]:
        def run() -> OcrPage:
            first_started.set()
            time.sleep(0.02)
            finished.append(name)
            return page(0)
        return run

    try:
        with cf.ThreadPoolExecutor(max_workers=2) as clients:
            long = clients.submit(bare._run, [task(f"long-{i}") for i in range(5)], threading.Event())
            first_started.wait()
            short = clients.submit(bare._run, [task("short")], threading.Event())
            long.result()
            short.result()
    finally:
        bare.close()
    # the long document had one page queued at a time: the short request's page ran right after that one
    assert finished.index("short") <= 2 and finished[-1] == "long-4"
