"""Change notices between processes over Redis pub/sub: token revocations, model changes, job wake-ups.

One channel, ``<prefix>notices``; a notice is ``{"topic": ..., "from": <sender id>}``, never any data (receivers
re-read what changed from the database). ``publish`` runs in the caller's thread, through the shared breaker, and
never raises: a lost notice costs only the fallback (cache TTLs, job polling). One subscriber thread (a background
component: ``start``/``stop``) hands notices from other processes to the handlers of their topic and reconnects
with backoff. Each time it has subscribed (the first time too) every handler is called once, since notices may have
been missed while it was not: caches drop, job runners look for work.

``SharedEpoch`` wraps a ``FileEpoch``: ``bump`` also publishes, a notice moves ``current``, which stays a local
read (a ``stat`` and an integer), never a network call.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from mistral_gateway.background import BackgroundThread
from mistral_gateway.storage.epoch import FileEpoch
from mistral_gateway.storage.redis_conn import Breaker, RedisUnavailable

__all__ = ["RedisBus", "SharedEpoch"]

log = logging.getLogger("mistral_gateway.redis")
MAX_BACKOFF = 5.0  # seconds between reconnection attempts, at most


class RedisBus:
    def __init__(self, client: Any, *, prefix: str, breaker: Breaker, subscriber: Any = None) -> None:
        self._client = client
        self._subscriber = subscriber or client  # a client with a socket timeout fit for blocking reads
        self.channel = f"{prefix}notices"
        self.sender = uuid.uuid4().hex
        self._breaker = breaker
        self._handlers: dict[str, list[Callable[[], None]]] = defaultdict(list)
        self._listener = BackgroundThread(self._listen, "redis-notices", join_timeout=10)
        self._stop = self._listener.stopping
        self._publish_failed = False
        self.connected = threading.Event()  # set while subscribed (tests wait on it)

    def on(self, topic: str, handler: Callable[[], None]) -> None:
        """Call ``handler`` (from the subscriber thread) when another process publishes ``topic``."""
        self._handlers[topic].append(handler)

    def publish(self, topic: str) -> None:
        message = json.dumps({"topic": topic, "from": self.sender})
        try:
            self._breaker.call(lambda: self._client.publish(self.channel, message))
        except RedisUnavailable as exc:
            if not self._publish_failed:  # once per outage
                log.warning("change notice %r not published: %s; other replicas fall back to cache TTLs and "
                            "job polling until Redis is back", topic, exc)
            self._publish_failed = True
            return
        if self._publish_failed:
            log.info("change notices are published again")
        self._publish_failed = False

    def close(self) -> None:
        if self._subscriber is not self._client:
            self._subscriber.close()

    def start(self) -> None:
        self._listener.start()

    def stop(self) -> None:
        self._listener.stop()

    def _listen(self) -> None:
        backoff, failing = 0.1, False
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                if failing:
                    log.warning("change notices: subscribed to Redis again")
                self._everything_changed()
                self.connected.set()
                failing, backoff = False, 0.1
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._dispatch(message.get("data"))
            except Exception as exc:  # any failure: reconnect after a pause (the thread must not die)
                self.connected.clear()
                if not failing:
                    log.warning("change notices: Redis unreachable (%s); retrying", type(exc).__name__)
                failing = True
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):  # the connection is being dropped anyway
                        pubsub.close()
        self.connected.clear()

    def _dispatch(self, data: Any) -> None:
        try:
            notice = json.loads(data)
            topic, sender = notice["topic"], notice["from"]
        except (TypeError, ValueError, KeyError):
            return  # not ours
        if sender != self.sender:
            self._call(self._handlers.get(topic, []))

    def _everything_changed(self) -> None:
        self._call([h for handlers in list(self._handlers.values()) for h in handlers])

    @staticmethod
    def _call(handlers: list[Callable[[], None]]) -> None:
        for handler in handlers:
            try:
                handler()
            except Exception:
                log.exception("a change notice handler failed")


class SharedEpoch:
    """A ``FileEpoch`` (this node's processes) that Redis notices (other nodes) move too."""

    def __init__(self, local: FileEpoch, bus: RedisBus, topic: str) -> None:
        self._local = local
        self._bus = bus
        self._topic = topic
        self._remote = 0
        self._lock = threading.Lock()
        bus.on(topic, self.moved)

    def current(self) -> int:
        return self._local.current() + (self._remote << 96)  # the file's value is far below 2**96

    def bump(self) -> None:
        self._local.bump()
        self._bus.publish(self._topic)

    def moved(self) -> None:
        with self._lock:
            self._remote += 1
