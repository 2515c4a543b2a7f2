"""The wrk report parser of the benchmark harness (bench/wrk.py), on real wrk 4.1.0 output."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _load_wrk() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "bench" / "wrk.py"
    spec = importlib.util.spec_from_file_location("bench_wrk", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


wrk = _load_wrk()

# Captured from `wrk -t1 -c32 -d3s --timeout=5s --latency` against bench/bare_app.py on loopback.
OK = """\
Running 3s test @ http://127.0.0.1:50159/v1/models
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.34ms  490.64us  11.34ms   78.91%
    Req/Sec    24.05k     5.07k   29.23k    74.19%
  Latency Distribution
     50%    1.12ms
     75%    1.48ms
     90%    1.97ms
     99%    3.05ms
  74086 requests in 3.10s, 10.74MB read
Requests/sec:  23902.00
Transfer/sec:      3.46MB
"""

# The same, against a path the app does not serve: every response is a 404.
NOT_FOUND = """\
Running 3s test @ http://127.0.0.1:50159/v1/nope
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.26ms  269.11us   5.16ms   93.98%
    Req/Sec    25.47k     1.52k   26.92k    90.00%
  Latency Distribution
     50%    1.19ms
     75%    1.27ms
     90%    1.39ms
     99%    2.50ms
  75930 requests in 3.00s, 10.79MB read
  Non-2xx or 3xx responses: 75930
Requests/sec:  25296.05
Transfer/sec:      3.59MB
"""


def test_parses_throughput_and_percentiles() -> None:
    r = wrk.parse_wrk_output(OK)
    assert r.rps == pytest.approx(23902.0)
    assert r.requests == 74086
    assert r.duration_s == pytest.approx(3.10)
    assert r.p50_ms == pytest.approx(1.12)
    assert r.p99_ms == pytest.approx(3.05)
    assert r.percentiles_ms == pytest.approx({50.0: 1.12, 75.0: 1.48, 90.0: 1.97, 99.0: 3.05})
    assert r.latency_avg_ms == pytest.approx(1.34)
    assert r.latency_max_ms == pytest.approx(11.34)
    assert r.errors == 0


def test_counts_non_2xx_as_errors() -> None:
    r = wrk.parse_wrk_output(NOT_FOUND)
    assert r.non_2xx == 75930
    assert r.errors == 75930
    assert r.rps == pytest.approx(25296.05)


def test_counts_socket_errors() -> None:
    text = OK.replace("Requests/sec:", "  Socket errors: connect 0, read 3, write 1, timeout 7\nRequests/sec:")
    r = wrk.parse_wrk_output(text)
    assert r.socket_errors == {"connect": 0, "read": 3, "write": 1, "timeout": 7}
    assert r.errors == 11


@pytest.mark.parametrize(("text", "ms"), [("490.64us", 0.49064), ("11.34ms", 11.34), ("1.02s", 1020.0),
                                          ("1.50m", 90_000.0)])
def test_time_units(text: str, ms: float) -> None:
    assert wrk.parse_latency_ms(text) == pytest.approx(ms)


def test_rejects_output_without_latency_distribution() -> None:
    text = OK.replace("Latency Distribution", "").replace("     50%    1.12ms\n", "")
    with pytest.raises(wrk.WrkError):
        wrk.parse_wrk_output(text)
