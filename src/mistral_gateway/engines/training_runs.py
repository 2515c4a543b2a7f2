"""Training runs as worker processes over run directories: what the LoRA trainer (``engines.trainer``) and the
classifier trainer (``engines.classifier_trainer``) share.

The run directory is the whole state: the spec in, ``progress.jsonl`` out (``training.progress``), checkpoints and
the artifact. So a server that restarted can still read a run's progress, and starting the same spec again after a
crash resumes. Cancel writes ``stop`` (the worker honours it within seconds) and kills the process if it is still
alive after ``grace`` seconds (e.g. while it loads a model).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from mistral_gateway.engines.base import EngineBusy, TrainingHandle, TrainingProgress
from mistral_gateway.training.progress import read_progress
from mistral_gateway.training.worker_main import PROGRESS_NAME, STOP_NAME

__all__ = ["WorkerRuns"]

_LOG_NAME = "worker.log"
_PID_NAME = "worker.pid"


class WorkerRuns:
    """Starts ``python -m <module> RUN_DIR`` per run and reads its state back; ``module`` is the worker's."""

    def __init__(self, module: str, *, grace: float = 5.0, python: str = sys.executable) -> None:
        self._module = module
        self._grace = grace
        self._python = python
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def launch(self, run_dir: Path, prepare: Callable[[], None]) -> TrainingHandle:
        """``prepare`` writes what the worker reads (its spec) once no other run is active in ``run_dir``."""
        key = str(run_dir.resolve())
        self._reap()
        with self._lock:
            running = self._procs.get(key)
            if (running is not None and running.poll() is None) or self._is_worker(_read_pid(run_dir), run_dir):
                raise EngineBusy(f"a training run is already active in {run_dir}")
            run_dir.mkdir(parents=True, exist_ok=True)
            prepare()
            (run_dir / STOP_NAME).unlink(missing_ok=True)
            with (run_dir / _LOG_NAME).open("ab") as log:
                proc = subprocess.Popen([self._python, "-m", self._module, str(run_dir)],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            self._procs[key] = proc
            (run_dir / _PID_NAME).write_text(f"{proc.pid}\n")  # lets a restarted server see the run is still alive
        return TrainingHandle(run_dir=str(run_dir), pid=proc.pid)

    def progress(self, handle: TrainingHandle) -> TrainingProgress:
        self._reap()
        run_dir = Path(handle.run_dir)
        alive = self._alive(handle)  # before reading: a worker that exits in between has written its last line
        log = read_progress(run_dir / PROGRESS_NAME)
        if log.terminal is not None:
            state = log.terminal.kind
        elif alive:
            state = "running"
        elif (run_dir / STOP_NAME).exists():
            state = "cancelled"  # stopped before it could say so (killed after the grace period)
        else:
            state = "crashed"
        return TrainingProgress(state=state, total_steps=log.total_steps, events=tuple(log.events),
                                adapter=log.adapter)

    def cancel(self, handle: TrainingHandle) -> None:
        (Path(handle.run_dir) / STOP_NAME).touch()
        timer = threading.Timer(self._grace, self._kill, args=(handle,))
        timer.daemon = True
        timer.start()

    def wait(self, handle: TrainingHandle, timeout: float | None = None) -> int | None:
        """The worker's exit code once it ends (for tests and shutdown); None when it is not ours."""
        proc = self._procs.get(str(Path(handle.run_dir).resolve()))
        return None if proc is None else proc.wait(timeout)

    def close(self) -> None:
        """Stops every run started here (they resume when started again)."""
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(self._grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _reap(self) -> None:
        """Collects the exit status of every worker of ours that ended, so none stays a zombie: a job stops reading
        a run's progress once its last line is written, possibly just before the worker exits."""
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            if proc.returncode is None:
                proc.poll()

    def _alive(self, handle: TrainingHandle) -> bool:
        proc = self._procs.get(str(Path(handle.run_dir).resolve()))
        if proc is not None:
            return proc.poll() is None
        return self._is_worker(handle.pid, Path(handle.run_dir))  # started by an earlier server process

    def _kill(self, handle: TrainingHandle) -> None:
        if not self._alive(handle):
            return
        proc = self._procs.get(str(Path(handle.run_dir).resolve()))
        if proc is not None:
            proc.kill()
            proc.wait()
        else:
            os.kill(handle.pid, signal.SIGKILL)

    def _is_worker(self, pid: int | None, run_dir: Path) -> bool:
        """Whether ``pid`` still runs our worker on ``run_dir`` (a reused pid runs something else)."""
        if pid is None:
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return self._module.encode() in cmdline and str(run_dir).encode() in cmdline


def _read_pid(run_dir: Path) -> int | None:
    try:
        return int((run_dir / _PID_NAME).read_text())
    except (OSError, ValueError):
        return None
