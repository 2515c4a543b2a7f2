"""A batch job survives its worker's SIGKILL: a ``mistral-gateway worker`` process runs a batch on the real SmolLM2,
is killed after its first checkpoint, and the next worker finishes the job from that checkpoint; every request of
the batch is answered exactly once in the output file."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mistral_gateway.config import load_settings
from mistral_gateway.protocol.batch import TERMINAL_STATUSES, BatchJobIn
from mistral_gateway.services.container import build_services
from support import CLI, clean_env, short_lease_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LINES = 150
BOUND = 300.0  # seconds any wait may take before the test calls it a hang (not a timing assertion)


def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([*CLI, "worker", "--config", str(config)], env=clean_env(), stdout=out, stderr=out)


def test_a_batch_resumes_from_its_checkpoint_after_the_worker_is_killed(tmp_path: Path, weights_dir: Path) -> None:
    config = short_lease_config(tmp_path, weights_dir)
    services = build_services(load_settings(config))
    assert services.batch is not None
    _, record = services.tokens.create("batch")
    requests = [{"custom_id": f"line-{i}", "body": {"messages": [{"role": "user", "content": f"Say {i}."}],
                                                     "max_tokens": 2, "temperature": 0}} for i in range(LINES)]
    job = asyncio.run(services.batch.create(record.workspace_id, record.id, BatchJobIn.model_validate(
        {"endpoint": "/v1/chat/completions", "model": "ministral-3b-latest", "requests": requests})))
    workers: list[subprocess.Popen[bytes]] = []

    def state() -> dict:
        return services.batch.get(record.workspace_id, job.id).model_dump()  # type: ignore[union-attr]

    def wait_for(check, alive: subprocess.Popen[bytes]) -> dict:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + BOUND
        while not check(current := state()):
            assert time.monotonic() < deadline, f"batch never got there: {current['status']}"
            assert alive.poll() is None, f"worker exited with {alive.returncode}"
            time.sleep(0.05)
        return current

    try:
        first = start_worker(config, tmp_path / "worker1.log")
        workers.append(first)
        at_kill = wait_for(lambda s: s["completed_requests"] > 0, first)  # a checkpoint was committed
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        killed_at = int(time.time())
        assert at_kill["status"] == "RUNNING" and 0 < at_kill["completed_requests"] < LINES

        second = start_worker(config, tmp_path / "worker2.log")
        workers.append(second)
        done = wait_for(lambda s: s["status"] in TERMINAL_STATUSES, second)
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

    assert (done["status"], done["total_requests"], done["succeeded_requests"], done["failed_requests"]) == (
        "SUCCESS", LINES, LINES, 0)
    out = json.loads(json.dumps(services.batch.get(record.workspace_id, job.id, inline=True).model_dump()))
    ids = [line["custom_id"] for line in out["outputs"]]
    assert sorted(ids) == sorted(r["custom_id"] for r in requests)  # every request answered, none twice
    assert all(line["response"]["status_code"] == 200 for line in out["outputs"])
    # Resumed, not restarted: the answers committed before the kill are kept as the first worker made them (a rerun
    # would have made every answer after the kill, once the lease had lapsed).
    before = [line for line in out["outputs"] if line["response"]["body"]["created"] <= killed_at]
    assert len(before) >= at_kill["completed_requests"]
    services.close()
