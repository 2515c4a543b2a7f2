"""bench provenance: every results row names its run and git commit; runs merged from several invocations stay
apart; the LiteLLM requirements the proxy suite installs are in the repository."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _bench_modules() -> tuple[ModuleType, ModuleType, ModuleType]:
    """bench/ modules import each other by top-level name, as bench/run.py runs them."""
    sys.path.insert(0, str(BENCH))
    try:
        return (importlib.import_module("provenance"), importlib.import_module("report"),
                importlib.import_module("core"))
    finally:
        sys.path.remove(str(BENCH))


provenance, report, core = _bench_modules()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    (path / "a.txt").write_text("one\n")
    git(path, "add", "a.txt")
    git(path, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "first")
    return path


def row(suite: str, scenario: str, rps: float = 100.0) -> Any:
    return core.Row(suite=suite, scenario=scenario, url="/x", rps=rps, p50_ms=1.0, p99_ms=2.0, errors=0,
                    cpu_us_per_request=10.0, server_cpu_percent=50.0, samples=[])


def header(repo: Path, suites: list[str]) -> dict[str, Any]:
    config = report.config_json(core.BenchConfig(workdir=repo), suites)
    return provenance.run_header(repo, {"date": "now", "cores": 2}, config)


def test_git_state_clean_dirty_and_outside_a_checkout(repo: Path, tmp_path: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    assert provenance.git_state(repo) == {"git_sha": sha, "git_dirty": False}
    (repo / "a.txt").write_text("two\n")
    assert provenance.git_state(repo) == {"git_sha": sha, "git_dirty": True}
    (repo / "a.txt").write_text("one\n")
    (repo / "untracked.txt").write_text("x")  # untracked files do not change what the SHA measured
    assert provenance.git_state(repo)["git_dirty"] is False
    outside = tmp_path / "plain"
    outside.mkdir()
    assert provenance.git_state(outside) == {"git_sha": "unknown", "git_dirty": None}


def test_run_ids_sort_by_time_and_are_unique() -> None:
    early = provenance.new_run_id(dt.datetime(2026, 11, 26, 3, 53, 6, tzinfo=dt.UTC))
    late = provenance.new_run_id(dt.datetime(2026, 12, 4, 17, 0, 0, tzinfo=dt.UTC))
    assert early.startswith("20261126T035306Z-") and early < late
    assert provenance.new_run_id() != provenance.new_run_id()


def test_every_row_names_its_run_and_runs_stay_apart(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    first = header(repo, ["models", "chat"])
    report.write_json(out, first, [row("models", "m1"), row("chat", "c1")])
    (repo / "a.txt").write_text("changed\n")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qam", "second")
    second = header(repo, ["chat"])
    report.write_json(out, second, [row("chat", "c2")])

    doc = json.loads(out.read_text())
    assert doc["format"] == report.FORMAT and doc["latest_run"] == second["run_id"]
    by_scenario = {r["scenario"]: r for r in doc["results"]}
    assert set(by_scenario) == {"m1", "c2"}  # chat re-measured, models kept
    assert by_scenario["m1"]["run_id"] == first["run_id"] and by_scenario["c2"]["run_id"] == second["run_id"]
    assert by_scenario["m1"]["git_sha"] != by_scenario["c2"]["git_sha"]
    assert by_scenario["c2"]["git_sha"] == git(repo, "rev-parse", "HEAD")
    assert set(doc["runs"]) == {first["run_id"], second["run_id"]}
    assert doc["runs"][first["run_id"]]["config"]["suites"] == ["models", "chat"]

    third = header(repo, ["models"])
    report.write_json(out, third, [row("models", "m2")])
    doc = json.loads(out.read_text())
    assert set(doc["runs"]) == {second["run_id"], third["run_id"]}  # no row refers to the first run any more


def test_format_1_rows_are_upgraded_with_an_unknown_sha(tmp_path: Path) -> None:
    machine = {"date": "2026-11-26T03:53:06+00:00"}
    old = {
        "machine": machine, "config": {"suites": ["chat", "embeddings"]},
        "runs": {"proxy": {"machine": {"date": "2026-11-26T01:27:08+00:00"}, "config": {"suites": ["proxy"]}},
                 "chat": {"machine": machine, "config": {"suites": ["chat", "embeddings"]}},
                 "embeddings": {"machine": machine, "config": {"suites": ["chat", "embeddings"]}}},
        "results": [{"suite": "proxy", "scenario": "p"}, {"suite": "chat", "scenario": "c"},
                    {"suite": "embeddings", "scenario": "e"}],
    }
    doc = report.upgrade(old)
    assert set(doc["runs"]) == {"20261126T012708Z-legacy", "20261126T035306Z-legacy"}  # chat+embeddings: one run
    assert all(r["git_sha"] == "unknown" for r in doc["results"])
    assert [r["run_id"] for r in doc["results"]] == ["20261126T012708Z-legacy", "20261126T035306Z-legacy",
                                                     "20261126T035306Z-legacy"]


def test_committed_results_are_attributed() -> None:
    doc = json.loads((BENCH / "results.json").read_text())
    assert doc["format"] == report.FORMAT
    assert doc["results"] and all(r["run_id"] in doc["runs"] and r["git_sha"] for r in doc["results"])
    for run in doc["runs"].values():
        assert run["git_sha"] == "unknown" or len(run["git_sha"]) == 40
        assert run["git_sha"] != "unknown" or run.get("provenance_note")  # an unknown SHA says why


def test_litellm_requirements_live_in_the_repo() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        proxy = importlib.import_module("suites.proxy")
    finally:
        sys.path.remove(str(BENCH))
    path = Path(proxy.LITELLM_REQUIREMENTS)
    assert path.parent == BENCH and path.is_file()
    assert f"litellm=={proxy.LITELLM_VERSION}" in path.read_text().splitlines()
