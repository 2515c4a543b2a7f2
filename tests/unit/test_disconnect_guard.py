"""``unless_disconnected``: the work of a client that left is cancelled (ClientClosedRequest), also when it left
before the watcher started; work that ends before ``WATCH_AFTER`` starts no watcher task; other cancellations and
errors pass through unchanged. (The whole path over a real server: tests/api/test_disconnect.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from starlette.requests import Request

from mistral_gateway.errors import ClientClosedRequest
from mistral_gateway.http import disconnect
from mistral_gateway.http.disconnect import unless_disconnected


def _request(gone: asyncio.Event) -> Request:
    """A request whose body was read: ``receive()`` blocks until the client leaves, as uvicorn's does."""

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)


def _counting_tasks(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """How many tasks the event loop was asked to create since."""
    created = 0
    loop = asyncio.get_running_loop()
    original = loop.create_task

    def create_task(coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        nonlocal created
        created += 1
        return original(coro, **kwargs)

    monkeypatch.setattr(loop, "create_task", create_task)
    return lambda: created


def test_quick_work_starts_no_watcher(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        created = _counting_tasks(monkeypatch)
        assert await unless_disconnected(_request(asyncio.Event()), asyncio.sleep(0, "answer")) == "answer"
        await asyncio.sleep(2 * disconnect.WATCH_AFTER)  # the timer was cancelled: nothing starts later either
        assert created() == 0

    asyncio.run(main())


def test_longer_work_is_watched_and_the_watcher_ends_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        created = _counting_tasks(monkeypatch)
        assert await unless_disconnected(_request(asyncio.Event()),
                                         asyncio.sleep(2 * disconnect.WATCH_AFTER, "answer")) == "answer"
        assert created() == 1
        await asyncio.sleep(0)
        assert asyncio.all_tasks() == {asyncio.current_task()}  # the watcher was cancelled with the work's end

    asyncio.run(main())


@pytest.mark.parametrize("leaves_after", [0.0, 0.5])  # before the watcher starts, and while it watches
def test_a_client_that_leaves_cancels_the_work(leaves_after: float) -> None:
    async def main() -> None:
        gone, cancelled = asyncio.Event(), asyncio.Event()

        async def work() -> str:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "never"

        loop = asyncio.get_running_loop()
        loop.call_later(leaves_after * disconnect.WATCH_AFTER * 4, gone.set)
        with pytest.raises(ClientClosedRequest):
            await asyncio.wait_for(unless_disconnected(_request(gone), work()), 30)
        assert cancelled.is_set()
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]  # our cancel was undone

    asyncio.run(main())


def test_errors_and_other_cancellations_pass_through() -> None:
    async def main() -> None:
        async def fails() -> None:
            await asyncio.sleep(2 * disconnect.WATCH_AFTER)
            raise ValueError("engine")

        with pytest.raises(ValueError, match="engine"):
            await unless_disconnected(_request(asyncio.Event()), fails())
        task = asyncio.get_running_loop().create_task(unless_disconnected(_request(asyncio.Event()),
                                                                          asyncio.sleep(60)))
        await asyncio.sleep(0)
        task.cancel()  # the server cancelling the request (shutdown): not a client that left
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
