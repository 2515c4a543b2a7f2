"""The limits suite's measuring process: ``admit`` + ``settle`` of one limited principal's request on a limiter, in a
closed loop from N threads, with the gateway's own limiter classes. Prints one JSON object.

    python bench/limits_direct.py --store redis --url redis://127.0.0.1:PORT/0 --threads 4 --duration 5

``--store none`` is the baseline: what a principal without limits costs (``LimitService.buckets`` finds none, so
nothing is stored or asked). A limited principal has a token bucket (RPM, TPM, concurrency: a window count, a token
count and a lease) and a workspace bucket (RPM), as a token in a limited workspace has. Every thread has its own
token, so threads contend only on the workspace's window; budgets are far above what a run reaches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["main"]

BIG = 10**9  # a budget no run reaches: every check is admitted, so each measures the full admission


def _checker(store: str, url: str, thread: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """(one check, close) for one thread."""
    from mistral_gateway.config import WorkspacePolicy
    from mistral_gateway.services.limits import LimitService
    from mistral_gateway.services.tokens import Principal
    from mistral_gateway.storage.limits import Bucket, DatabaseLimiter

    if store == "none":
        service = LimitService(_NoStore(), workspaces=[WorkspacePolicy(name="other", requests_per_minute=1)])
        principal = Principal(f"tok_{thread}", "ws", "team", frozenset({"*"}), None)

        def nothing() -> None:
            if service.buckets(principal):
                raise SystemExit("the baseline principal must have no limits")

        return nothing, lambda: None
    limiter: Any
    close: Callable[[], None]
    if store == "redis":
        import redis

        from mistral_gateway.storage.limits_redis import RedisLimiter

        client = redis.Redis.from_url(url)
        limiter, close = RedisLimiter(client, prefix=f"bench-{uuid.uuid4().hex[:8]}:"), client.close
    else:
        from mistral_gateway.storage.db import Database

        db = Database(url)
        limiter, close = DatabaseLimiter(db), db.dispose
    buckets = [Bucket("token", f"tok_{thread}", BIG, BIG, BIG), Bucket("workspace", "team", BIG)]

    def check() -> None:
        lease, now = uuid.uuid4().hex, time.time()
        if limiter.admit(buckets, lease, now) is not None:
            raise SystemExit("refused: the budgets are meant to be out of reach")
        limiter.settle(buckets, lease, 42, now)

    return check, close


class _NoStore:
    def __getattr__(self, name: str) -> Any:
        raise SystemExit(f"the baseline reached the limiter ({name})")


def _worker(check: Callable[[], None], until: float, warm_until: float, out: list[float]) -> None:
    while (start := time.perf_counter()) < until:
        check()
        if start >= warm_until:
            out.append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["none", "sqlite", "postgresql", "redis"], required=True)
    parser.add_argument("--url", default="")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    checkers = [_checker(args.store, args.url, n) for n in range(args.threads)]
    latencies: list[list[float]] = [[] for _ in checkers]
    warm_until = time.perf_counter() + args.warmup
    until = warm_until + args.duration
    cpu = time.process_time()
    threads = [threading.Thread(target=_worker, args=(check, until, warm_until, out))
               for (check, _), out in zip(checkers, latencies, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = time.process_time() - cpu
    for _, close in checkers:
        close()
    every = sorted(x for out in latencies for x in out)
    if not every:
        raise SystemExit("no check finished inside the measured window")
    p99 = every[min(len(every) - 1, int(len(every) * 0.99))]
    print(json.dumps({"store": args.store, "threads": args.threads, "checks": len(every),
                      "checks_per_s": len(every) / args.duration, "p50_us": 1e6 * statistics.median(every),
                      "p99_us": 1e6 * p99, "cpu_s": cpu}))


if __name__ == "__main__":
    main()
