"""Running ``wrk`` and parsing its text report (``--latency`` adds the percentile table)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["WrkError", "WrkResult", "parse_duration_s", "parse_latency_ms", "parse_wrk_output", "run_wrk",
           "wrk_path", "wrk_version"]

_LATENCY_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h)$")
_PERCENTILE = re.compile(r"^\s+(\d+(?:\.\d+)?)%\s+(\S+)\s*$", re.MULTILINE)
_LATENCY_STATS = re.compile(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)\s+", re.MULTILINE)
_TOTAL = re.compile(r"^\s+(\d+) requests in (\S+), ", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([0-9.]+)\s*$", re.MULTILINE)
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed something this parser does not understand."""


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    latency_avg_ms: float
    latency_max_ms: float
    percentiles_ms: dict[float, float]  # 50.0 -> p50 in milliseconds, ...
    socket_errors: dict[str, int] = field(default_factory=dict)  # connect/read/write/timeout
    non_2xx: int = 0

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())

    @property
    def p50_ms(self) -> float:
        return self.percentiles_ms[50.0]

    @property
    def p99_ms(self) -> float:
        return self.percentiles_ms[99.0]


def parse_latency_ms(text: str) -> float:
    """``812.00us`` / ``4.25ms`` / ``1.02s`` / ``1.50m`` -> milliseconds."""
    m = _QUANTITY.match(text.strip())
    if m is None:
        raise WrkError(f"unrecognised wrk time value {text!r}")
    return float(m.group(1)) * _LATENCY_UNITS_MS[m.group(2)]


def parse_duration_s(text: str) -> float:
    return parse_latency_ms(text) / 1000.0


def parse_wrk_output(text: str) -> WrkResult:
    """Parse the report of ``wrk --latency``. Raises WrkError if a required part is missing."""
    rps = _RPS.search(text)
    total = _TOTAL.search(text)
    stats = _LATENCY_STATS.search(text)
    if rps is None or total is None or stats is None:
        raise WrkError("wrk output lacks Requests/sec, the request total or the latency line:\n" + text)
    percentiles = {float(p): parse_latency_ms(v) for p, v in _PERCENTILE.findall(text)}
    if 50.0 not in percentiles or 99.0 not in percentiles:
        raise WrkError("wrk output lacks the latency distribution (run wrk with --latency):\n" + text)
    socket = _SOCKET.search(text)
    socket_errors = dict(zip(("connect", "read", "write", "timeout"),
                             (int(g) for g in socket.groups()), strict=True)) if socket else {}
    non_2xx = _NON_2XX.search(text)
    return WrkResult(
        requests=int(total.group(1)),
        duration_s=parse_duration_s(total.group(2)),
        rps=float(rps.group(1)),
        latency_avg_ms=parse_latency_ms(stats.group(1)),
        latency_max_ms=parse_latency_ms(stats.group(3)),
        percentiles_ms=percentiles,
        socket_errors=socket_errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkError("wrk is not installed: `apt-get install -y wrk` (make bench does this for you)")
    return path


def wrk_version() -> str:
    proc = subprocess.run([wrk_path(), "-v"], capture_output=True, text=True, check=False, timeout=10)
    lines = (proc.stdout or proc.stderr).splitlines()
    return lines[0].strip() if lines else "unknown"


def run_wrk(
    url: str,
    *,
    duration_s: int,
    connections: int,
    threads: int = 1,
    headers: Mapping[str, str] | None = None,
    timeout_s: int = 5,
    script: Path | None = None,
) -> WrkResult:
    """One wrk run against ``url`` (a separate process, so the load generator never shares the server's GIL).
    ``script``: a wrk Lua script (e.g. setting ``wrk.method`` and ``wrk.body`` for POST requests)."""
    argv = [wrk_path(), f"-t{threads}", f"-c{connections}", f"-d{max(1, duration_s)}s", f"--timeout={timeout_s}s",
            "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=duration_s + 60)
    if proc.returncode != 0:
        raise WrkError(f"wrk exited with {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return parse_wrk_output(proc.stdout)
