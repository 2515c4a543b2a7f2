"""The proxy benchmark's pure logic (bench/openloop.py, bench/canned_upstream.py, bench/suites/proxy.py): the open-loop
schedule, percentiles, the report summary, the HTTP/1.1 response parser, the canned upstream's answers, the generated
configs and the result table. Nothing here starts a server or measures a time."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mistral_gateway.config import Settings

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _load_suite() -> tuple[ModuleType, ModuleType, ModuleType]:
    """bench/ modules import each other by top-level name (``core``, ``servers``, ...), as bench/run.py runs them."""
    sys.path.insert(0, str(BENCH))
    try:
        return (importlib.import_module("suites.proxy"), importlib.import_module("core"),
                importlib.import_module("report"))
    finally:
        sys.path.remove(str(BENCH))


openloop = _load("bench_openloop", BENCH / "openloop.py")
canned = _load("bench_canned_upstream", BENCH / "canned_upstream.py")
proxy, core, report = _load_suite()
MS = 1_000_000


# -- schedule and percentiles -------------------------------------------------------------------------------------
def test_schedule_is_evenly_spaced_from_zero() -> None:
    offsets = openloop.intended_offsets_ns(500, 1.0)
    assert len(offsets) == 500
    assert offsets[:3] == [0, 2 * MS, 4 * MS]
    assert offsets[-1] == 998 * MS
    assert openloop.intended_offsets_ns(3, 1.0) == [0, 333_333_333, 666_666_667]
    assert len(openloop.intended_offsets_ns(50, 12.0)) == 600


@pytest.mark.parametrize(("rate", "seconds"), [(0, 1.0), (-5, 1.0), (10, 0.0)])
def test_schedule_is_empty_without_rate_or_time(rate: float, seconds: float) -> None:
    assert openloop.intended_offsets_ns(rate, seconds) == []


def test_nearest_rank_percentile() -> None:
    values = list(range(1, 101))
    assert openloop.percentile(values, 50) == 50
    assert openloop.percentile(values, 99) == 99
    assert openloop.percentile(values, 100) == 100
    assert openloop.percentile(values, 0) == 1
    assert openloop.percentile([7.0], 99) == 7.0
    assert openloop.percentile([1, 2, 3, 4], 50) == 2
    assert openloop.percentile([], 50) is None


# -- the report -----------------------------------------------------------------------------------------------------
def _record(intended_ms: float, done_ms: float | None, *, error: str | None = None, ttfb_ms: float | None = None,
            sent_ms: float | None = None) -> Any:
    r = openloop.RequestRecord(int(intended_ms * MS))
    r.dispatched_ns = r.intended_ns + MS // 10
    r.sent_ns = int((sent_ms if sent_ms is not None else intended_ms + 0.1) * MS)
    if done_ms is not None:
        r.done_ns, r.error, r.status = int(done_ms * MS), error, 500 if error else 200
        r.ttfb_ns = int(ttfb_ms * MS) if ttfb_ms is not None else None
    return r


def test_summary_counts_only_the_window_and_measures_from_intended_time() -> None:
    records = [
        _record(-5, -4),  # warm-up: left out
        _record(0, 2, ttfb_ms=1),  # latency 2 ms although...
        _record(10, 11, sent_ms=10.5),  # ... this one was sent late: latency still from its intended time
        _record(20, 24, error="http 500: boom"),
        _record(30, 33),
        _record(1000, 1001),  # after the window: left out
    ]
    s = openloop.summarise(records, 0, 1000 * MS, 1005 * MS)
    assert s["scheduled"] == 4
    assert s["ok"] == 3
    assert s["errors"] == 1
    assert s["errors_by_kind"] == {"http 500": 1}
    assert s["first_error"] == "http 500: boom"
    assert s["unfinished"] == 0
    assert s["latency_ms"]["p50"] == pytest.approx(2.0)
    assert s["latency_ms"]["max"] == pytest.approx(3.0)
    assert s["ttfb_ms"]["p50"] == pytest.approx(1.0)
    assert s["service_ms"]["p50"] == pytest.approx(1.9)  # written -> last byte
    assert s["dispatch_lag_ms"]["max"] == pytest.approx(0.1)
    assert s["achieved_rps"] == pytest.approx(3 / 1.0)  # successful completions inside the window


def test_unfinished_requests_count_as_lower_bounds() -> None:
    records = [_record(0, 1), _record(100, None), _record(200, None)]
    s = openloop.summarise(records, 0, 1000 * MS, 6000 * MS)
    assert s["unfinished"] == 2
    assert s["ok"] == 1
    assert s["latency_ms"]["max"] == pytest.approx(5900.0)  # deadline - intended
    assert s["latency_ms"]["p50"] == pytest.approx(5800.0)


def test_summary_of_nothing() -> None:
    s = openloop.summarise([], 0, 1000 * MS, 2000 * MS)
    assert s["scheduled"] == 0
    assert s["latency_ms"]["p99"] is None
    assert s["achieved_rps"] == 0.0


# -- HTTP -----------------------------------------------------------------------------------------------------------
def _feed_bytewise(parser: Any, data: bytes) -> list[bool]:
    return [parser.feed(data[i:i + 1]) for i in range(len(data))]


def test_parses_a_content_length_response_fed_byte_by_byte() -> None:
    raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":\"bc\"}\n"
    parser = openloop.ResponseParser()
    results = _feed_bytewise(parser, raw)
    assert results[-1] is True and not any(results[:-1])
    assert parser.status == 200
    assert bytes(parser.body) == b"{\"a\":\"bc\"}\n"
    assert parser.keep_alive


def test_parses_chunked_with_extensions_and_trailers() -> None:
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"7;ext=1\r\ndata: a\r\n" b"A\r\n\n\ndata: bc\r\n" b"0\r\nX-Trailer: 1\r\n\r\n")
    for split in range(1, len(raw)):
        parser = openloop.ResponseParser()
        first = parser.feed(raw[:split])
        assert parser.feed(raw[split:]) or first
        assert bytes(parser.body) == b"data: a\n\ndata: bc"
        assert parser.body_started


def test_body_started_only_after_the_head() -> None:
    parser = openloop.ResponseParser()
    assert not parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert not parser.body_started
    assert not parser.feed(b"5\r\nhel")
    assert parser.body_started


def test_connection_close_and_until_close() -> None:
    parser = openloop.ResponseParser()
    assert parser.feed(b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert parser.status == 503 and not parser.keep_alive
    parser.reset()
    assert not parser.feed(b"HTTP/1.0 200 OK\r\n\r\nsome body")
    assert parser.until_close and not parser.keep_alive
    assert bytes(parser.body) == b"some body"


def test_interim_and_empty_responses() -> None:
    parser = openloop.ResponseParser()
    assert parser.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    assert parser.status == 204


@pytest.mark.parametrize("raw", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"])
def test_rejects_malformed_responses(raw: bytes) -> None:
    with pytest.raises(openloop.ParseError):
        openloop.ResponseParser().feed(raw)


def test_request_bytes() -> None:
    raw = openloop.build_request("POST", "http://127.0.0.1:8123/v1/chat/completions?x=1",
                                 [("Authorization", "Bearer t")], b"{}")
    assert raw == (b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8123\r\n"
                   b"Content-Type: application/json\r\nContent-Length: 2\r\nAuthorization: Bearer t\r\n\r\n{}")


# -- the canned upstream --------------------------------------------------------------------------------------------
def _call(method: str, path: str, body: bytes = b"") -> tuple[int, dict[bytes, bytes], bytes, int]:
    """Drive the ASGI app by hand: (status, headers, body, number of body messages)."""
    messages: list[dict[str, Any]] = []
    request = [{"type": "http.request", "body": body[:3], "more_body": True},
               {"type": "http.request", "body": body[3:], "more_body": False}]

    async def receive() -> dict[str, Any]:
        return request.pop(0)

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asyncio.run(canned.app({"type": "http", "method": method, "path": path}, receive, send))
    start, chunks = messages[0], messages[1:]
    return (start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in chunks), len(chunks))


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions"])
def test_canned_completion(path: str) -> None:
    status, headers, body, _ = _call("POST", path, json.dumps({"model": "m1", "messages": []}).encode())
    assert status == 200 and headers[b"content-type"] == b"application/json"
    data = json.loads(body)
    assert data["object"] == "chat.completion" and data["model"] == "m1"
    assert data["choices"][0]["message"]["content"] == canned.CONTENT
    assert data["usage"]["total_tokens"] == 17
    assert int(headers[b"content-length"]) == len(body)


def test_canned_stream() -> None:
    status, headers, body, count = _call("POST", "/v1/chat/completions",
                                         json.dumps({"model": canned.MODEL, "stream": True}).encode())
    assert status == 200 and headers[b"content-type"] == b"text/event-stream"
    events = [e for e in body.decode().split("\n\n") if e]
    assert count == len(events) + 1  # one message per event, then the closing empty one
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == canned.CONTENT
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["completion_tokens"] == 12
    assert proxy.EXPECT in body.decode()


def test_canned_models_and_unknown_routes() -> None:
    status, _, body, _ = _call("GET", "/v1/models")
    assert status == 200 and json.loads(body)["data"][0]["id"] == canned.MODEL
    assert _call("GET", "/nope")[0] == 404
    assert _call("POST", "/v1/chat/completions", b"not json")[0] == 400


# -- configs ----------------------------------------------------------------------------------------------------------
def test_gateway_config_follows_the_settings_contract() -> None:
    settings = Settings(**tomllib.loads(proxy.gateway_config(8123)))
    assert [m.id for m in settings.models] == ["bench-model"]  # no local models
    (upstream,) = settings.upstreams
    assert (upstream.name, upstream.kind, upstream.base_url) == ("canned", "openai", "http://127.0.0.1:8123/v1")
    assert upstream.allow_private_network
    assert [(r.upstream, r.model) for r in settings.models[0].routes] == [("canned", "canned-model")]


def test_litellm_config() -> None:
    config = json.loads(proxy.litellm_config(8123))  # JSON is YAML
    (model,) = config["model_list"]
    assert model["model_name"] == "bench-model"
    assert model["litellm_params"] == {"model": "openai/canned-model", "api_base": "http://127.0.0.1:8123/v1",
                                       "api_key": "dummy"}
    assert config["general_settings"]["master_key"] == proxy.LITELLM_MASTER_KEY
    assert proxy.LITELLM_VERSION not in ("1.82.7", "1.82.8")


def test_wrk_script() -> None:
    script = proxy.wrk_script('{"a":1}')
    assert 'wrk.method = "POST"' in script and 'wrk.body = [==[{"a":1}]==]' in script
    with pytest.raises(ValueError, match="terminator"):
        proxy.wrk_script("]==]")


# -- the table --------------------------------------------------------------------------------------------------------
def _sample(rate: int, p50: float, p99: float, *, rps: float | None = None, ttfb: float | None = None,
            unfinished: int = 0, errors: int = 0, upstream: float | None = 0.1) -> Any:
    latency = {"p50": p50, "p90": p99, "p99": p99, "max": p99}
    ttfb_ms = {"p50": ttfb, "p90": ttfb, "p99": ttfb, "max": ttfb}
    rep = {"offered_rps": rate, "achieved_rps": rps if rps is not None else rate, "latency_ms": latency,
           "ttfb_ms": ttfb_ms, "errors": errors, "unfinished": unfinished, "scheduled": rate * 10, "ok": rate * 10,
           "total_ok": rate * 12, "duration_s": 10.0, "client_wall_s": 12.0, "client_cpu_s": 0.6,
           "dispatch_lag_ms": {"p99": 0.05}, "peak_connections": 3, "first_error": "http 500: x" if errors else None}
    return proxy.sample_from_report(rep, server_cpu_s=1.2, upstream_cpu_s=upstream)


def _max(rps: float, upstream_cpu_s: float | None = None) -> Any:
    return proxy.MaxSample(rps=rps, p50_ms=1.0, p99_ms=2.0, errors=0, requests=int(rps * 10), duration_s=10.0,
                           server_cpu_s=5.0, upstream_cpu_s=upstream_cpu_s)


def _all_samples(gateway_p50_at_500: float, gateway_p99_at_500: float) -> dict[tuple[str, str, int], list[Any]]:
    samples = {}
    for mode in proxy.MODES:
        for rate in proxy.RATES:
            samples[("direct", mode, rate)] = [_sample(rate, 0.3, 1.0, ttfb=0.2, upstream=None)] * 2
            samples[("gateway", mode, rate)] = [_sample(rate, 0.8, 3.0, ttfb=0.6)] * 2
            samples[("litellm", mode, rate)] = [_sample(rate, 5000.0, 6000.0, rps=90, unfinished=40)] * 2
    samples[("gateway", "chat", 500)] = [_sample(500, gateway_p50_at_500, gateway_p99_at_500)] * 2
    return samples


def _row(rows: list[Any], name: str) -> Any:
    return next(r for r in rows if r.scenario == name)


def test_rows_report_added_latency_and_targets() -> None:
    rows = proxy.build_rows(_all_samples(1.1, 4.0), {"direct": [_max(10000)],
                                                     "gateway": [_max(900, 2.0), _max(1100, 4.0)],
                                                     "litellm": [_max(90)]}, {}, connections=32)
    assert len(rows) == 3 * 3 * 2 + 3
    at_500 = _row(rows, "gateway chat @500/s")
    assert [(c.name, c.passed) for c in at_500.checks] == [("added p50 @500/s", True), ("added p99 @500/s", True)]
    assert at_500.checks[0].measured == "+0.80 ms" and at_500.checks[1].measured == "+3.00 ms"
    assert at_500.notes[0] == "added p50 +0.80 ms, p99 +3.00 ms"
    assert at_500.baseline == "direct chat @500/s" and at_500.ratio is None
    assert not _row(rows, "gateway chat @200/s").checks  # targets are at 500/s only
    stream = _row(rows, "gateway stream @50/s")
    assert stream.notes[0].startswith("TTFB p50 0.60 ms, p99 0.60 ms; added TTFB p50 +0.40 ms, p99 +0.40 ms")
    overloaded = _row(rows, "litellm chat @200/s")
    assert any(n.startswith("OVERLOADED: 80 request(s) unfinished") for n in overloaded.notes)
    assert overloaded.rps == 90
    direct = _row(rows, "direct chat @500/s")
    assert direct.cpu_us_per_request == pytest.approx(1.2e6 / 6000)
    assert direct.server_cpu_percent == pytest.approx(10.0)
    assert any(n.startswith("load generator: CPU 5%") for n in direct.notes)
    gw_max = _row(rows, "gateway max (closed loop, 32 conns)")
    assert gw_max.rps == 1000 and gw_max.ratio == pytest.approx(1000 / 90)
    assert gw_max.baseline == "litellm max (closed loop, 32 conns)"
    assert [(c.name, c.passed, c.measured) for c in gw_max.checks] == [("max RPS vs LiteLLM", True, "11.11x")]
    assert gw_max.notes == ["0.1x direct", "upstream CPU 30%"]
    assert gw_max.cpu_us_per_request == pytest.approx((5e6 / 9000 + 5e6 / 11000) / 2)  # median of two rounds
    assert "(baseline)" in report.format_table(rows)


def test_rows_fail_targets_that_are_missed() -> None:
    rows = proxy.build_rows(_all_samples(1.5, 7.0), {"direct": [_max(10000)], "gateway": [_max(400)],
                                                     "litellm": [_max(90)]}, {}, connections=32)
    assert [c.passed for c in _row(rows, "gateway chat @500/s").checks] == [False, False]
    assert [c.passed for c in _row(rows, "gateway max (closed loop, 32 conns)").checks] == [False]


def test_rows_when_legs_could_not_be_measured() -> None:
    samples = {k: v for k, v in _all_samples(1.0, 4.0).items() if k[0] == "direct"}
    problems = {"gateway": "gateway: POST /v1/chat/completions answered HTTP 404 -- routing not available",
                "litellm": "LiteLLM not installed: pip failed"}
    rows = proxy.build_rows(samples, {"direct": [_max(10000)]}, problems, connections=32)
    status = _row(rows, "gateway: NOT MEASURED")
    assert status.notes == [problems["gateway"]]
    assert [c.passed for c in status.checks] == [False, False, False]
    assert all("gateway not measured" in c.measured for c in status.checks)
    assert _row(rows, "litellm: NOT MEASURED").notes == [problems["litellm"]]
    assert report.format_table(rows)  # renders with the None columns


def test_gateway_max_without_litellm_fails_its_check() -> None:
    rows = proxy.build_rows({}, {"direct": [_max(10000)], "gateway": [_max(900)]},
                            {"litellm": "did not start"}, connections=32)
    check = _row(rows, "gateway max (closed loop, 32 conns)").checks[0]
    assert not check.passed and "LiteLLM not measured" in check.measured
