"""Prometheus metrics: what the requests, jobs and upstreams did, exposed at ``GET /metrics``.

One ``Metrics`` object per service graph, with its own registry (no module-level collectors: two apps in one
process, as in the tests, count apart). On the hot path a request costs one dict lookup of cached children and a
few lock-guarded increments (prometheus-client's ``labels()`` parses its arguments on every call, so the children
are kept per label tuple). Multi-process: when ``PROMETHEUS_MULTIPROC_DIR`` is set in the environment before the
worker processes start (prometheus-client reads it when it is first imported), every process writes its values to
files there and a scrape sums them (``MultiProcessCollector``); the queue depth is read from the shared database at
scrape time, so it is right whichever process answers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Metrics"]

log = logging.getLogger("mistral_gateway.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: from a cached model list (well under a millisecond) to a long generation on CPU.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_JOB_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


class _QueueDepth(Collector):
    """Queued jobs by kind, read from the database at scrape time (shared by every process and worker)."""

    def __init__(self, read: Callable[[], Mapping[str, int]]) -> None:
        self._read = read

    def describe(self) -> Iterable[Metric]:
        """The family without reading the database (registering calls this, before any migration ran)."""
        yield self._family()

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        try:
            depth = self._read()
        except Exception:  # the rest of the scrape is still worth having; the log says why this part is missing
            log.exception("reading the job queue depth for /metrics failed")
            depth = {}
        for kind, count in sorted(depth.items()):
            family.add_metric([kind], count)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("mistral_gateway_job_queue_depth", "Jobs waiting to run, by kind", labels=["kind"])


class _EngineSlots(Collector):
    """llama.cpp slots busy, slots and waiting requests by model, read from the engine manager at scrape time
    (nothing on the request path). Per process: each worker process has engines of its own."""

    def __init__(self, read: Callable[[], Mapping[str, tuple[int, int, int]]]) -> None:
        self._read = read

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        busy, total, waiting = self._families()
        for model, (b, t, w) in sorted(self._read().items()):
            busy.add_metric([model], b)
            total.add_metric([model], t)
            waiting.add_metric([model], w)
        return busy, total, waiting

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (GaugeMetricFamily("mistral_gateway_engine_slots_busy", "Engine slots generating now, by model",
                                  labels=["model"]),
                GaugeMetricFamily("mistral_gateway_engine_slots", "Engine slots (parallel sequences), by model",
                                  labels=["model"]),
                GaugeMetricFamily("mistral_gateway_engine_waiting", "Requests waiting for an engine slot, by model",
                                  labels=["model"]))


class Metrics:
    def __init__(self, queue_depth: Callable[[], Mapping[str, int]] | None = None,
                 engine_slots: Callable[[], Mapping[str, tuple[int, int, int]]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        r = self.registry
        self.requests = Counter("mistral_gateway_requests", "API requests by operation, dialect and status",
                                ["operation", "dialect", "status"], registry=r)
        self.latency = Histogram("mistral_gateway_request_duration_seconds", "API request latency by operation",
                                 ["operation"], buckets=_LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("mistral_gateway_tokens", "Tokens billed, by operation, model and kind (prompt or "
                              "completion)", ["operation", "model", "kind"], registry=r)
        self.upstream_errors = Counter("mistral_gateway_upstream_errors", "Failed exchanges with an upstream, by "
                                       "upstream and reason", ["upstream", "reason"], registry=r)
        self.job_duration = Histogram("mistral_gateway_job_duration_seconds", "Job run time by kind and outcome",
                                      ["kind", "outcome"], buckets=_JOB_BUCKETS, registry=r)
        self._queue_depth = _QueueDepth(queue_depth) if queue_depth is not None else None
        if self._queue_depth is not None:
            r.register(self._queue_depth)
        self._engine_slots = _EngineSlots(engine_slots) if engine_slots is not None else None
        if self._engine_slots is not None:
            r.register(self._engine_slots)
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._token_children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def request(self, operation: str, dialect: str, status: int, seconds: float, *, model: str | None = None,
                prompt_tokens: float = 0, completion_tokens: float = 0) -> None:
        """One finished API request (the hot path: cached children, no label parsing after the first)."""
        key = (operation, dialect, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.requests.labels(operation, dialect, str(status)), self.latency.labels(operation))
        children[0].inc()
        children[1].observe(seconds)
        if prompt_tokens or completion_tokens:
            name = model or "-"
            counters = self._token_children.get((operation, name))
            if counters is None:
                counters = self._token_children[(operation, name)] = (
                    self.tokens.labels(operation, name, "prompt"), self.tokens.labels(operation, name, "completion"))
            if prompt_tokens:
                counters[0].inc(prompt_tokens)
            if completion_tokens:
                counters[1].inc(completion_tokens)

    def upstream_failure(self, upstream: str, reason: str) -> None:
        """An upstream answered 5xx, did not answer, or broke off (each try counts, fallbacks included)."""
        self.upstream_errors.labels(upstream, reason).inc()

    def job(self, kind: str, outcome: str, seconds: float) -> None:
        self.job_duration.labels(kind, outcome).observe(seconds)

    def render(self) -> bytes:
        """The text exposition of every metric (summed over the worker processes in multi-process mode)."""
        if self._multiproc_dir is None:
            return generate_latest(self.registry)
        scrape = CollectorRegistry()
        MultiProcessCollector(scrape, path=self._multiproc_dir)
        for collector in (self._queue_depth, self._engine_slots):
            if collector is not None:
                scrape.register(collector)
        return generate_latest(scrape)
