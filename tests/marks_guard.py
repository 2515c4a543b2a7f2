"""A pytest plugin (``-p marks_guard`` in pyproject's addopts) that keeps ``make test-fast`` honest.

``test-fast`` deselects ``slow`` and ``e2e``; it stays fast only if every test that loads a real model is marked
``slow`` and every test that starts a server process (the CLI's ``serve``/``worker``, a llama.cpp worker process) is
marked ``e2e``. This plugin fails a test that does either without its mark, in every run (not only fast ones), so a
missing mark shows up in CI instead of slowing everyone's inner loop.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import pytest

LLAMA_WORKER = "mistral_gateway.engines.llama_worker"
SERVER_COMMANDS = {"serve", "worker"}


def server_command(args: Any) -> str | None:
    """What kind of server ``args`` (a Popen argument) starts, or None."""
    argv = [str(a) for a in args] if isinstance(args, Sequence) and not isinstance(args, str | bytes) else [str(args)]
    if LLAMA_WORKER in argv:
        return "a llama.cpp worker process"
    cli = next((i for i, a in enumerate(argv) if Path(a).name == "mistral-gateway" or a == "mistral_gateway"), None)
    if cli is not None and subcommand(argv[cli + 1:]) in SERVER_COMMANDS:
        return f"the CLI server ({' '.join(argv[cli:])})"
    return None


def subcommand(args: list[str]) -> str | None:
    """The CLI's subcommand: the first positional argument (every global option takes a value)."""
    rest = iter(args)
    for arg in rest:
        if not arg.startswith("-"):
            return arg
        if "=" not in arg:
            next(rest, None)
    return None


class MarksGuard:
    def __init__(self) -> None:
        self.item: pytest.Item | None = None
        self.violations: list[str] = []
        self._undo: list[Callable[[], None]] = []

    def check(self, what: str, mark: str) -> None:
        item = self.item
        if item is None or item.get_closest_marker(mark) is not None:
            return
        message = f"{item.nodeid} {what} but is not marked @pytest.mark.{mark} (make test-fast would run it)"
        self.violations.append(message)
        pytest.fail(message, pytrace=False)  # BaseException: broad ``except Exception`` does not hide it

    def patch(self, owner: Any, name: str, wrap: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        setattr(owner, name, wrap(original))
        self._undo.append(lambda: setattr(owner, name, original))

    def install(self) -> None:
        from mistral_gateway.engines import sentence, speech, worker_process

        def popen(original: Any) -> Any:
            def init(proc: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
                what = server_command(args)
                if what is not None:
                    self.check(f"starts {what}", "e2e")
                    if what.startswith("a llama"):
                        self.check("loads a real model", "slow")
                original(proc, args, *rest, **kwargs)
            return init

        def real_model(original: Any) -> Any:
            def load(*args: Any, **kwargs: Any) -> Any:
                self.check("loads a real model", "slow")
                return original(*args, **kwargs)
            return load

        self.patch(subprocess.Popen, "__init__", popen)
        self.patch(worker_process.InProcessServer, "__init__", real_model)  # llama.cpp in this process
        self.patch(sentence, "load", real_model)  # the engine manager looks loaders up by name at each load
        self.patch(speech, "whisper_model", real_model)  # looked up by name too, by speech.load and tests

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
        self.item, self.violations = item, []
        try:
            return (yield)
        finally:
            self.item = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        if report.failed:
            self.violations = []  # reported already
        # a violation in a thread (an engine loading on a pool) may have been swallowed: fail the test anyway
        if self.violations and report.when == "teardown" and report.passed:
            report.outcome = "failed"
            report.longrepr = "\n".join(self.violations)
        return report


def pytest_configure(config: pytest.Config) -> None:
    guard = MarksGuard()
    guard.install()
    config.pluginmanager.register(guard, "marks-guard-instance")
    config.add_cleanup(guard.uninstall)
