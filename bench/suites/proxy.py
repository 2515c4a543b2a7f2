"""Suite "proxy": what mistral-gateway adds when it forwards chat completions to an upstream, next to LiteLLM's proxy
doing the same, both in front of one fixed-response upstream on loopback.

Three legs, one upstream (``bench/canned_upstream.py``: a raw ASGI app answering every chat completion with the same
canned body, or its SSE stream):

- ``direct``: the upstream itself, ``POST /v1/chat/completions`` (the baseline);
- ``gateway``: ``mistral-gateway serve`` with one model, ``bench-model``, routed to the upstream
  (``[[upstreams]] kind = "openai"``, ``routes = [{ upstream = "canned", model = "canned-model" }]``);
- ``litellm``: LiteLLM's proxy (pinned version, its own venv ``bench/.litellm-venv``, installed here when missing),
  one model ``bench-model`` = ``openai/canned-model`` with ``api_base`` on the upstream, ``--num_workers 1``:
  one process each, like the gateway and the upstream.

Measurements, interleaved over ``--rounds`` (medians reported):

- open loop (``bench/openloop.py`` in its own process): 50, 200 and 500 requests/s offered for ``--warmup`` +
  ``--duration`` seconds, non-streamed and streamed (``"stream": true``). Latency runs from each request's
  intended send time (no coordinated omission) to its last byte; streams also report the time to the first body
  byte (TTFB). "Added" latency = the proxy's percentile minus the direct leg's at the same rate and mode.
- max throughput: ``wrk -t1 -c<--connections>`` closed loop, non-streamed POST (a Lua script): the rate a leg
  completes when it is given as much work as it takes, i.e. its saturation throughput.

Targets (from the issue): at 500 requests/s, the gateway adds <= 1 ms at p50 and <= 5 ms at p99; its max
throughput is >= 5x LiteLLM's.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import BenchConfig, Check, Row, Sample
from servers import Server, ServerError, free_port, launched
from wrk import run_wrk

from .chat import _tree
from .models import _create_token, _gateway_command, _gateway_env

__all__ = ["LEGS", "LITELLM_VERSION", "MAX_ADDED_P50_MS", "MAX_ADDED_P99_MS", "MIN_MAX_RPS_RATIO", "MODES", "RATES",
           "MaxSample", "OpenLoopSample", "build_rows", "ensure_litellm", "gateway_config", "litellm_config",
           "max_scenario", "run", "sample_from_report", "scenario", "wrk_script"]

SUITE = "proxy"
RATES = (50, 200, 500)
TARGET_RATE = 500
MAX_ADDED_P50_MS = 1.0
MAX_ADDED_P99_MS = 5.0
MIN_MAX_RPS_RATIO = 5.0
LEGS = ("direct", "gateway", "litellm")
MODES = ("chat", "stream")
MODEL = "bench-model"
UPSTREAM_MODEL = "canned-model"
CHAT_PATH = "/v1/chat/completions"
EXPECT = "canned answer"  # in the canned content, whole or in the streamed pieces
MAX_CONNECTIONS = 256  # the open-loop client's pool; beyond it requests queue (and their wait counts)
DRAIN_S = 5.0  # how long an overloaded leg gets to answer after the window before requests count as unfinished
LITELLM_VERSION = "1.110.2"  # pinned: 1.82.7 and 1.82.8 were compromised releases
LITELLM_MASTER_KEY = "sk-bench"
BENCH_DIR = Path(__file__).resolve().parent.parent
LITELLM_VENV = BENCH_DIR / ".litellm-venv"
# its [proxy] extra pins packages PyPI lacks: this list replaces it; BENCH_LITELLM_REQUIREMENTS overrides the path
LITELLM_REQUIREMENTS = BENCH_DIR / "litellm-proxy-requirements.txt"


def _body(stream: bool) -> str:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":"))


# -- pure parts (tested in tests/unit/test_bench_proxy.py) --------------------------------------------------------
def gateway_config(upstream_port: int) -> str:
    """The gateway's TOML: only the bench model, routed to the canned upstream (no local models)."""
    return f"""\
[[upstreams]]
name = "canned"
kind = "openai"
base_url = "http://127.0.0.1:{upstream_port}/v1"
allow_private_network = true

[[models]]
id = "{MODEL}"
capabilities = ["completion_chat"]
routes = [{{ upstream = "canned", model = "{UPSTREAM_MODEL}" }}]
"""


def litellm_config(upstream_port: int) -> str:
    """LiteLLM's config (JSON is YAML): one model forwarding to the canned upstream, a master key, no database."""
    return json.dumps({
        "model_list": [{"model_name": MODEL, "litellm_params": {
            "model": f"openai/{UPSTREAM_MODEL}", "api_base": f"http://127.0.0.1:{upstream_port}/v1",
            "api_key": "dummy"}}],
        "general_settings": {"master_key": LITELLM_MASTER_KEY},
    }, indent=2) + "\n"


def wrk_script(body: str) -> str:
    """wrk Lua: every request a POST with ``body`` (headers are passed with -H)."""
    if "]==]" in body:
        raise ValueError("body contains the Lua long-string terminator")
    return f'wrk.method = "POST"\nwrk.body = [==[{body}]==]\nwrk.headers["Content-Type"] = "application/json"\n'


def scenario(leg: str, mode: str, rate: int) -> str:
    return f"{leg} {mode} @{rate}/s"


def max_scenario(leg: str, connections: int) -> str:
    return f"{leg} max (closed loop, {connections} conns)"


@dataclass(frozen=True, slots=True)
class OpenLoopSample:
    """One open-loop run of one leg at one rate (its measured window)."""

    offered_rps: float
    rps: float  # achieved: successful responses completed in the window / its length
    p50_ms: float | None  # latency from intended send to last byte
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    ttfb_p50_ms: float | None  # to the first body byte
    ttfb_p99_ms: float | None
    errors: int
    unfinished: int
    scheduled: int
    ok: int
    total_ok: int  # warm-up included (what the server's CPU time covers)
    duration_s: float  # the window
    wall_s: float  # the whole run (warm-up, window, drain): what the CPU figures cover
    server_cpu_s: float  # the leg's server: the proxy, or the upstream for the direct leg
    upstream_cpu_s: float | None  # proxies' legs: the upstream's share
    client_cpu_s: float
    dispatch_lag_p99_ms: float | None  # the load generator's own lateness
    peak_connections: int
    first_error: str | None

    @property
    def cpu_us_per_request(self) -> float | None:
        return self.server_cpu_s * 1e6 / self.total_ok if self.total_ok else None

    @property
    def server_cpu_percent(self) -> float:
        return 100.0 * self.server_cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def upstream_cpu_percent(self) -> float | None:
        return 100.0 * self.upstream_cpu_s / self.wall_s if self.upstream_cpu_s is not None and self.wall_s else None

    @property
    def client_cpu_percent(self) -> float:
        return 100.0 * self.client_cpu_s / self.wall_s if self.wall_s else 0.0


@dataclass(frozen=True, slots=True)
class MaxSample(Sample):
    """A wrk run, with the upstream's CPU time when the leg is a proxy."""

    upstream_cpu_s: float | None = None

    @property
    def upstream_cpu_percent(self) -> float | None:
        return 100.0 * self.upstream_cpu_s / self.duration_s if self.upstream_cpu_s is not None and self.duration_s \
            else None


def sample_from_report(report: Mapping[str, Any], server_cpu_s: float,
                       upstream_cpu_s: float | None = None) -> OpenLoopSample:
    latency, ttfb = report["latency_ms"], report["ttfb_ms"]
    return OpenLoopSample(
        offered_rps=report["offered_rps"], rps=report["achieved_rps"], p50_ms=latency["p50"],
        p90_ms=latency["p90"], p99_ms=latency["p99"], max_ms=latency["max"], ttfb_p50_ms=ttfb["p50"],
        ttfb_p99_ms=ttfb["p99"], errors=report["errors"], unfinished=report["unfinished"],
        scheduled=report["scheduled"], ok=report["ok"], total_ok=report.get("total_ok", report["ok"]),
        duration_s=report["duration_s"], wall_s=report.get("client_wall_s") or report["duration_s"],
        server_cpu_s=server_cpu_s, upstream_cpu_s=upstream_cpu_s, client_cpu_s=report["client_cpu_s"],
        dispatch_lag_p99_ms=(report.get("dispatch_lag_ms") or {}).get("p99"),
        peak_connections=report["peak_connections"], first_error=report["first_error"])


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _diff(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def _ms(value: float | None) -> str:
    return f"{value:+.2f} ms" if value is not None else "n/a"


def _plain_ms(value: float | None) -> str:
    return f"{value:.2f} ms" if value is not None else "n/a"


def _open_row(leg: str, mode: str, rate: int, runs: list[OpenLoopSample], url: str) -> Row:
    row = Row(
        suite=SUITE, scenario=scenario(leg, mode, rate), url=url,
        rps=_median([s.rps for s in runs]), p50_ms=_median([s.p50_ms for s in runs]),
        p99_ms=_median([s.p99_ms for s in runs]), errors=sum(s.errors for s in runs),
        cpu_us_per_request=_median([s.cpu_us_per_request for s in runs]),
        server_cpu_percent=_median([s.server_cpu_percent for s in runs]),
        samples=runs,  # type: ignore[arg-type]
        baseline=None if leg == "direct" else scenario("direct", mode, rate),
    )
    unfinished = sum(s.unfinished for s in runs)
    if unfinished:
        row.notes.append(f"OVERLOADED: {unfinished} request(s) unfinished {DRAIN_S:g} s after the window "
                         "(latencies are lower bounds)")
    elif row.rps is not None and row.rps < 0.95 * rate:
        row.notes.append(f"OVERLOADED: achieved {row.rps:.0f} of {rate} req/s offered")
    errors = [s.first_error for s in runs if s.first_error]
    if errors:
        row.notes.append(f"first error: {errors[0][:160]}")
    return row


def _ttfb(runs: Sequence[OpenLoopSample]) -> tuple[float | None, float | None]:
    return _median([s.ttfb_p50_ms for s in runs]), _median([s.ttfb_p99_ms for s in runs])


def _gateway_checks(added_p50: float | None, added_p99: float | None, why: str = "") -> list[Check]:
    suffix = f" ({why})" if why else ""
    return [
        Check(f"added p50 @{TARGET_RATE}/s", f"<= {MAX_ADDED_P50_MS:g} ms", _ms(added_p50) + suffix,
              added_p50 is not None and added_p50 <= MAX_ADDED_P50_MS),
        Check(f"added p99 @{TARGET_RATE}/s", f"<= {MAX_ADDED_P99_MS:g} ms", _ms(added_p99) + suffix,
              added_p99 is not None and added_p99 <= MAX_ADDED_P99_MS),
    ]


def _max_check(ratio: float | None, why: str = "") -> Check:
    measured = f"{ratio:.2f}x" if ratio is not None else "n/a"
    return Check("max RPS vs LiteLLM", f">= {MIN_MAX_RPS_RATIO:g}x", measured + (f" ({why})" if why else ""),
                 ratio is not None and ratio >= MIN_MAX_RPS_RATIO)


def _max_row(leg: str, runs: Sequence[Sample], connections: int, url: str) -> Row:
    cpu = [s.cpu_us_per_request for s in runs if s.cpu_us_per_request is not None]
    return Row(suite=SUITE, scenario=max_scenario(leg, connections), url=url,
               rps=statistics.median(s.rps for s in runs), p50_ms=statistics.median(s.p50_ms for s in runs),
               p99_ms=statistics.median(s.p99_ms for s in runs), errors=sum(s.errors for s in runs),
               cpu_us_per_request=statistics.median(cpu) if cpu else None,
               server_cpu_percent=statistics.median(s.server_cpu_percent for s in runs), samples=list(runs))


def build_rows(open_samples: Mapping[tuple[str, str, int], list[OpenLoopSample]],
               max_samples: Mapping[str, list[Sample]], problems: Mapping[str, str], *, connections: int,
               urls: Mapping[str, str] | None = None) -> list[Row]:
    """The suite's table: open-loop rows (mode, then rate, then leg) with added latency versus the direct leg, the
    max-throughput rows, and one row per leg that could not be measured. Legs in ``problems`` have no samples."""
    urls = urls or {}
    rows: list[Row] = []
    by_key: dict[tuple[str, str, int], Row] = {}
    for mode in MODES:
        for rate in RATES:
            for leg in LEGS:
                runs = open_samples.get((leg, mode, rate))
                if not runs:
                    continue
                row = _open_row(leg, mode, rate, runs, urls.get(leg, CHAT_PATH) + (" (stream)" * (mode == "stream")))
                by_key[(leg, mode, rate)] = row
                rows.append(row)
    for (leg, mode, rate), row in by_key.items():
        runs = open_samples[(leg, mode, rate)]
        direct = by_key.get(("direct", mode, rate))
        ttfb50, ttfb99 = _ttfb(runs)
        if leg == "direct":
            if mode == "stream":
                row.notes.append(f"TTFB p50 {_plain_ms(ttfb50)}, p99 {_plain_ms(ttfb99)}")
            lag = _median([s.dispatch_lag_p99_ms for s in runs])
            client = _median([s.client_cpu_percent for s in runs])
            row.notes.append(f"load generator: CPU {client or 0:.0f}%, dispatch lag p99 {_plain_ms(lag)}")
            continue
        added_p50 = _diff(row.p50_ms, direct.p50_ms) if direct else None
        added_p99 = _diff(row.p99_ms, direct.p99_ms) if direct else None
        if mode == "stream":
            d50, d99 = _ttfb(open_samples[("direct", mode, rate)]) if direct else (None, None)
            row.notes.insert(0, f"TTFB p50 {_plain_ms(ttfb50)}, p99 {_plain_ms(ttfb99)}; added TTFB p50 "
                                f"{_ms(_diff(ttfb50, d50))}, p99 {_ms(_diff(ttfb99, d99))}; added total p50 "
                                f"{_ms(added_p50)}, p99 {_ms(added_p99)}")
        else:
            row.notes.insert(0, f"added p50 {_ms(added_p50)}, p99 {_ms(added_p99)}")
        upstream = _median([s.upstream_cpu_percent for s in runs])
        if upstream is not None:
            row.notes.append(f"upstream CPU {upstream:.0f}%")
        if leg == "gateway" and mode == "chat" and rate == TARGET_RATE:
            row.checks = _gateway_checks(added_p50, added_p99, "" if direct else "direct leg missing")

    max_rows = {leg: _max_row(leg, max_samples[leg], connections, urls.get(leg, CHAT_PATH))
                for leg in LEGS if max_samples.get(leg)}
    direct_max, gateway_max, litellm_max = (max_rows.get(leg) for leg in LEGS)
    for leg, row in max_rows.items():
        if leg == "direct":
            continue
        if direct_max is not None and direct_max.rps and row.rps is not None:
            row.notes.append(f"{row.rps / direct_max.rps:.3g}x direct")
        upstream = _median([getattr(s, "upstream_cpu_percent", None) for s in max_samples[leg]])
        if upstream is not None:
            row.notes.append(f"upstream CPU {upstream:.0f}%")
    if gateway_max is not None:
        if litellm_max is not None and litellm_max.rps:
            gateway_max.baseline = litellm_max.scenario
            gateway_max.ratio = gateway_max.rps / litellm_max.rps if gateway_max.rps is not None else None
            gateway_max.checks = [_max_check(gateway_max.ratio)]
        else:
            gateway_max.checks = [_max_check(None, "LiteLLM not measured")]
    rows += max_rows.values()

    for leg in LEGS:
        if leg not in problems:
            continue
        status = Row(suite=SUITE, scenario=f"{leg}: NOT MEASURED", url=urls.get(leg, "-"), rps=None, p50_ms=None,
                     p99_ms=None, errors=0, cpu_us_per_request=None, server_cpu_percent=None, samples=[], unit="",
                     notes=[problems[leg]])
        if leg == "gateway":
            status.checks = [*_gateway_checks(None, None, "gateway not measured"),
                             _max_check(None, "gateway not measured")]
        rows.append(status)
    return rows


# -- setup --------------------------------------------------------------------------------------------------------
def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _litellm_version() -> str | None:
    python = LITELLM_VENV / "bin" / "python"
    if not (LITELLM_VENV / "bin" / "litellm").exists() or not python.exists():
        return None
    proc = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                          capture_output=True, text=True, check=False, timeout=60)
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_litellm(log_path: Path) -> Path:
    """The ``litellm`` executable of ``bench/.litellm-venv``, at the pinned version; creates the venv and installs
    the requirements list when missing (several minutes). Raises ServerError with what went wrong."""
    version = _litellm_version()
    if version != LITELLM_VERSION:
        requirements = Path(os.environ.get("BENCH_LITELLM_REQUIREMENTS", LITELLM_REQUIREMENTS))
        if not requirements.exists():
            raise ServerError(f"LiteLLM requirements list not found: {requirements} (set BENCH_LITELLM_REQUIREMENTS)")
        pins = requirements.read_text()
        if f"litellm=={LITELLM_VERSION}" not in pins.replace(" ", ""):
            raise ServerError(f"{requirements} does not pin litellm=={LITELLM_VERSION}")
        _log(f"  installing LiteLLM {LITELLM_VERSION} into {LITELLM_VENV} from {requirements} "
             f"(found: {version or 'none'}; several minutes; log: {log_path})")
        with log_path.open("ab") as log:
            steps: list[list[str]] = []
            if not (LITELLM_VENV / "bin" / "python").exists():
                python = shutil.which("python3.11") or sys.executable
                steps.append([python, "-m", "venv", str(LITELLM_VENV)])
                steps.append([str(LITELLM_VENV / "bin" / "pip"), "install", "--upgrade", "pip"])
            steps.append([str(LITELLM_VENV / "bin" / "pip"), "install", "-r", str(requirements)])
            for argv in steps:
                log.write(f"$ {' '.join(argv)}\n".encode())
                log.flush()
                proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False, timeout=3600)
                if proc.returncode != 0:
                    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
                    raise ServerError(f"`{' '.join(argv[:4])} ...` failed ({proc.returncode}):\n{tail}")
        version = _litellm_version()
    if version != LITELLM_VERSION:
        raise ServerError(f"{LITELLM_VENV} has litellm {version}, not the pinned {LITELLM_VERSION}")
    return LITELLM_VENV / "bin" / "litellm"


def _litellm_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MISTRAL_GATEWAY_", "LITELLM_", "OPENAI_", "VIRTUAL_ENV", "PYTHON"))}
    env.update({
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # the bundled price list, not a download at start
        "LITELLM_TELEMETRY_DISABLED": "True",  # no usage telemetry
        "LITELLM_LOG": "WARNING",  # uvicorn at warning: no access log line per request (as for the gateway)
        "DISABLE_SCHEMA_UPDATE": "True",  # no database anyway
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    })
    env["PATH"] = f"{LITELLM_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _post(url: str, body: str, headers: Mapping[str, str], timeout: float = 30.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body.encode(), method="POST",  # noqa: S310 - loopback http only
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@dataclass(frozen=True, slots=True)
class Leg:
    name: str
    server: Server
    headers: dict[str, str]
    url: str  # what reports show

    @property
    def endpoint(self) -> str:
        return self.server.base_url + CHAT_PATH


def _probe(leg: Leg) -> str | None:
    """One non-streamed and one streamed request; None if both carry the canned answer, else what went wrong."""
    for stream in (False, True):
        try:
            status, body = _post(leg.endpoint, _body(stream), leg.headers)
        except OSError as err:
            return f"{leg.name}: POST {CHAT_PATH} failed: {err}"
        if status != 200 or EXPECT.encode() not in body or (stream and b"[DONE]" not in body):
            what = "streamed " if stream else ""
            hint = (" -- routing to an upstream is not available in this gateway build"
                    if leg.name == "gateway" and status in (400, 404, 422, 501) else "")
            return f"{leg.name}: {what}POST {CHAT_PATH} answered HTTP {status}: {body[:300]!r}{hint}"
    return None


def _cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in _tree(pid):
        try:
            stat = Path(f"/proc/{proc}/stat").read_text()
        except FileNotFoundError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def _settle(servers: Sequence[Server], limit_s: float = 60.0, busy: float = 0.15) -> None:
    """Wait until the servers are idle (below ``busy`` of a core together), e.g. after an overloaded run."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = sum(_cpu(s.proc.pid) for s in servers)
        time.sleep(0.3)
        if (sum(_cpu(s.proc.pid) for s in servers) - before) / 0.3 < busy:
            return
    _log(f"  (servers still busy after {limit_s:.0f} s; going on)")


def _open_loop(leg: Leg, upstream: Server, mode: str, rate: int, config: BenchConfig) -> OpenLoopSample:
    argv = [sys.executable, str(BENCH_DIR / "openloop.py"), "--url", leg.endpoint, "--rate", str(rate),
            "--duration", str(config.duration_s), "--warmup", str(config.warmup_s), "--body", _body(mode == "stream"),
            "--expect", EXPECT, "--max-connections", str(MAX_CONNECTIONS), "--drain", str(DRAIN_S)]
    if mode == "stream":
        argv += ["--expect", "[DONE]"]
    for name, value in leg.headers.items():
        argv += ["-H", f"{name}: {value}"]
    proxied = leg.server is not upstream
    server_before, upstream_before = _cpu(leg.server.proc.pid), _cpu(upstream.proc.pid)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                          timeout=config.warmup_s + config.duration_s + DRAIN_S + 120)
    server_cpu = _cpu(leg.server.proc.pid) - server_before
    upstream_cpu = _cpu(upstream.proc.pid) - upstream_before if proxied else None
    if proc.returncode != 0:
        raise ServerError(f"openloop.py failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return sample_from_report(report, server_cpu, upstream_cpu)


def _wrk_max(leg: Leg, upstream: Server, config: BenchConfig, script: Path) -> MaxSample:
    if config.warmup_s > 0:
        run_wrk(leg.endpoint, duration_s=config.warmup_s, connections=config.connections, threads=config.threads,
                headers=leg.headers, script=script)
    proxied = leg.server is not upstream
    before, upstream_before = _cpu(leg.server.proc.pid), _cpu(upstream.proc.pid)
    result = run_wrk(leg.endpoint, duration_s=config.duration_s, connections=config.connections,
                     threads=config.threads, headers=leg.headers, script=script)
    cpu = _cpu(leg.server.proc.pid) - before
    upstream_cpu = _cpu(upstream.proc.pid) - upstream_before if proxied else None
    return MaxSample(rps=result.rps, p50_ms=result.p50_ms, p99_ms=result.p99_ms, errors=result.errors,
                     requests=result.requests, duration_s=result.duration_s, server_cpu_s=cpu,
                     upstream_cpu_s=upstream_cpu)


def _start(stack: ExitStack, name: str, argv: list[str], port: int, config: BenchConfig, problems: dict[str, str],
           **kwargs: Any) -> Server | None:
    try:
        return stack.enter_context(launched(name, argv, port=port, log_path=config.workdir / f"{name}.log", **kwargs))
    except ServerError as err:
        problems[name] = f"{name} did not start: {str(err)[:600]}"
        _log(f"  {problems[name]}")
        return None


def _measure(legs: Sequence[Leg], upstream: Server, config: BenchConfig, script: Path
             ) -> tuple[dict[tuple[str, str, int], list[OpenLoopSample]], dict[str, list[Sample]]]:
    open_samples: dict[tuple[str, str, int], list[OpenLoopSample]] = {}
    max_samples: dict[str, list[Sample]] = {leg.name: [] for leg in legs}
    servers = [upstream, *(leg.server for leg in legs if leg.server is not upstream)]
    pairs = [(leg, mode) for mode in MODES for leg in legs]
    for round_no in range(config.rounds):
        order: Callable[[list[Any]], list[Any]] = (lambda xs: xs) if round_no % 2 == 0 else (lambda xs: xs[::-1])
        for rate in order(list(RATES)):
            for leg, mode in order(pairs):
                _settle(servers)
                s = _open_loop(leg, upstream, mode, rate, config)
                open_samples.setdefault((leg.name, mode, rate), []).append(s)
                flag = f"  unfinished {s.unfinished}" if s.unfinished else ""
                ttfb = f"  TTFB p50 {s.ttfb_p50_ms:7.2f}" if mode == "stream" and s.ttfb_p50_ms is not None else ""
                _log(f"  round {round_no + 1}/{config.rounds}  {scenario(leg.name, mode, rate):<24} "
                     f"achieved {s.rps:6.1f}/s  p50 {s.p50_ms or 0:8.2f} ms  p99 {s.p99_ms or 0:8.2f} ms{ttfb}  "
                     f"errors {s.errors}{flag}  server CPU {s.server_cpu_percent:3.0f}%")
        for leg in order(list(legs)):
            _settle(servers)
            sample = _wrk_max(leg, upstream, config, script)
            max_samples[leg.name].append(sample)
            _log(f"  round {round_no + 1}/{config.rounds}  {max_scenario(leg.name, config.connections):<24} "
                 f"{sample.rps:8.1f} req/s  p50 {sample.p50_ms:8.2f} ms  p99 {sample.p99_ms:8.2f} ms  "
                 f"errors {sample.errors}  server CPU {sample.server_cpu_percent:3.0f}%")
    return open_samples, max_samples


def run(config: BenchConfig) -> list[Row]:
    problems: dict[str, str] = {}
    urls = {"direct": f"canned upstream {CHAT_PATH}",
            "gateway": f"mistral-gateway {CHAT_PATH} -> openai upstream",
            "litellm": f"LiteLLM {LITELLM_VERSION} {CHAT_PATH} -> openai/{UPSTREAM_MODEL}"}
    try:
        litellm: Path | None = ensure_litellm(config.workdir / "litellm-install.log")
    except (ServerError, OSError, subprocess.SubprocessError) as err:
        litellm = None
        problems["litellm"] = f"LiteLLM not installed: {str(err)[:800]}"
        _log(f"  {problems['litellm']}")

    gateway_cmd = _gateway_command()
    env = _gateway_env()
    env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    data_dir = config.workdir / "gateway-data"
    token = _create_token(gateway_cmd, data_dir, env)
    script = config.workdir / "post.lua"
    script.write_text(wrk_script(_body(False)))

    with ExitStack() as stack:
        port = free_port()
        upstream = stack.enter_context(launched(
            "upstream", [sys.executable, str(BENCH_DIR / "canned_upstream.py"), "--port", str(port)],
            port=port, env=env, log_path=config.workdir / "upstream.log"))
        legs = [Leg("direct", upstream, {}, urls["direct"])]

        gateway_toml = config.workdir / "gateway.toml"
        gateway_toml.write_text(gateway_config(upstream.port))
        port = free_port()
        gw = _start(stack, "gateway", [gateway_cmd, "serve", "--host", "127.0.0.1", "--port", str(port),
                                       "--data-dir", str(data_dir), "--config", str(gateway_toml)],
                    port, config, problems, env=env)
        if gw is not None:
            legs.append(Leg("gateway", gw, {"Authorization": f"Bearer {token}"}, urls["gateway"]))

        if litellm is not None:
            litellm_dir = config.workdir / "litellm"
            litellm_dir.mkdir()
            litellm_yaml = litellm_dir / "config.yaml"
            litellm_yaml.write_text(litellm_config(upstream.port))
            port = free_port()
            proxy = _start(stack, "litellm", [str(litellm), "--config", str(litellm_yaml), "--host", "127.0.0.1",
                                              "--port", str(port), "--num_workers", "1"],
                           port, config, problems, env=_litellm_env(), ready_path="/health/liveliness",
                           startup_timeout_s=240.0, cwd=litellm_dir)
            if proxy is not None:
                legs.append(Leg("litellm", proxy, {"Authorization": f"Bearer {LITELLM_MASTER_KEY}"}, urls["litellm"]))

        for leg in list(legs):
            problem = _probe(leg)
            if problem is not None:
                if leg.name == "direct":
                    raise ServerError(f"the canned upstream does not answer as expected: {problem}")
                problems[leg.name] = problem
                legs.remove(leg)
                _log(f"  NOT MEASURED: {problem}")
        _log("  " + ", ".join(f"{leg.name} {leg.server.base_url} (pid {leg.server.proc.pid})" for leg in legs))
        open_samples, max_samples = _measure(legs, upstream, config, script)
    return build_rows(open_samples, max_samples, problems, connections=config.connections, urls=urls)
