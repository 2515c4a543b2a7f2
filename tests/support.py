"""Test helpers importable by any test module (``tests`` is on pytest's pythonpath)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from mistral_gateway.config import Settings, default_models
from mistral_gateway.http.app import create_app
from mistral_gateway.http.connection import uvicorn_options
from mistral_gateway.services.container import Services, build_services

__all__ = ["CLI", "LiveServer", "clean_env", "free_port", "peer_upstreams", "serving", "short_lease_config",
           "stop_process", "wait_until"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn on 127.0.0.1 in a background thread: a real HTTP server on loopback, stopped by the fixture."""

    def __init__(self, services: Services) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(services=services), host="127.0.0.1", port=self.port,
                                log_level="warning", access_log=False, lifespan="on",
                                **uvicorn_options(services.settings))  # the limits `serve` runs with
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("live server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def fake_settings(data_dir: Path, **fields: Any) -> Settings:
    """Settings that serve every default model on the fake engines (no weights), no dev token."""
    models = [m.model_copy(update={"engine": "fake", "asset": None}) for m in default_models()]
    return Settings(data_dir=data_dir, bootstrap_dev_token=False, models=models, **fields)


@contextmanager
def serving(settings: Settings, name: str = "test") -> Iterator[tuple[LiveServer, Services, str]]:
    """The services built from ``settings``, a token of theirs (all scopes) and a live server; stopped and closed
    on exit."""
    services = build_services(settings)
    token, _ = services.tokens.create(name)
    server = LiveServer(services)
    server.start()
    try:
        yield server, services, token
    finally:
        server.stop()
        services.close()


def _command() -> list[str]:
    beside = Path(sys.executable).with_name("mistral-gateway")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("mistral-gateway")
    return [found] if found else [sys.executable, "-m", "mistral_gateway"]


CLI = _command()  # the project's own console script, not whatever is on PATH


def clean_env() -> dict[str, str]:
    """The caller's environment without gateway settings, so only the command line configures the CLI."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MISTRAL_GATEWAY_")}


def wait_until(check: Callable[[], Any], *, alive: subprocess.Popen[bytes] | None = None,
               bound: float = 60.0) -> Any:
    """Poll ``check`` until it returns something true, and return that; ``bound`` seconds tell a hang from a slow
    machine (a deadline to wait for something, not a timing assertion). ``alive``: a process that must not exit."""
    deadline = time.monotonic() + bound
    while not (value := check()):
        assert time.monotonic() < deadline, "condition never came true"
        assert alive is None or alive.poll() is None, f"the process exited with {alive.returncode}"
        time.sleep(0.05)
    return value


def stop_process(proc: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM (a server hands its jobs back and exits), SIGKILL if it has not exited within ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def short_lease_config(tmp_path: Path, weights_dir: Path) -> Path:
    """A config file for tests that kill a process running a job: one job at a time, a lease that lapses two
    seconds after the last heartbeat, and a quick poll (so the next process takes the job up soon)."""
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
data_dir = "{tmp_path / 'data'}"
weights_path = "{weights_dir}"
bootstrap_dev_token = false
job_workers = 1
job_lease_seconds = 2.0
job_heartbeat_seconds = 0.2
job_poll_seconds = 0.1
""")
    return config


def peer_upstreams(base_url: str, model: str) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, str]]:
    """Two upstreams on one peer gateway at ``base_url`` (a native ``mistral-gateway`` one and an ``openai`` one,
    keyed by the PEER_KEY env var) and a route to ``model`` through each: (upstreams, native route, openai route)."""
    common = {"api_key_env": "PEER_KEY", "allow_private_network": True, "connect_timeout": 2}
    upstreams = [{"name": "peer", "kind": "mistral-gateway", "base_url": base_url, **common},
                 {"name": "peer-openai", "kind": "openai", "base_url": base_url + "/v1", **common}]
    return upstreams, {"upstream": "peer", "model": model}, {"upstream": "peer-openai", "model": model}
