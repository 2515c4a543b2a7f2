"""The fine-tuning benchmark's rows from its scripts' reports (no model, no training): LoRA tokens/s and seconds per
step, decode of the merged model against its base with the 0.9x target, a base that is not installed, and the
classifier run's time and held-out checks."""

from __future__ import annotations

from bench_modules import bench_module

fine_tuning = bench_module("suites.fine_tuning")

LORA = {"steps": 6, "threads": 1, "batch": 4, "seq_len": 128, "rank": 8, "s_per_step": 5.0, "tokens_per_s": 102.4,
        "run_wall_s": 80.0, "adapter_bytes": 9_797_696, "merge_s": 6.1, "decode_base_tok_s": 50.0,
        "decode_lora_tok_s": 40.0, "decode_merged_tok_s": 47.0, "decode_ratio": 0.8, "decode_merged_ratio": 0.94}


def test_lora_rows_give_training_speed_and_decode_against_the_base() -> None:
    train, base, merged, adapter = fine_tuning.lora_rows("SmolLM2-135M", LORA)
    assert (train.rps, train.unit, train.p50_ms) == (102.4, "tokens/s", 5000.0)
    assert "5.0 s per step" in train.notes[0] and "9,797,696 B" in train.notes[0]
    assert base.rps == 50.0 and not base.checks
    assert merged.baseline == base.scenario and merged.ratio == 0.94
    [check] = merged.checks
    assert (check.passed, check.goal, check.measured) == (True, ">= 0.9x", "0.94x")
    assert adapter.ratio == 0.8 and not adapter.checks  # informational: the unmerged adapter has no target


def test_a_merged_model_below_the_target_fails_its_check() -> None:
    rows = fine_tuning.lora_rows("Qwen", {**LORA, "decode_merged_ratio": 0.85})
    assert not rows[2].checks[0].passed


def test_a_base_that_is_not_installed_is_one_row_saying_so() -> None:
    [row] = fine_tuning.lora_rows("Qwen2.5-Coder-0.5B", None, "its weights are not installed")
    assert row.rps is None and row.samples == [] and "not installed" in row.notes[0]


def test_classifier_row_gives_lines_per_second_and_held_out_checks() -> None:
    report = {"lines": 1000, "threads": 1, "steps": 640, "run_wall_s": 40.0, "encode_s": 30.5, "fit_s": 1.2,
              "heldout_lines": 300, "heldout_topic_accuracy": 0.97, "heldout_mentions_exact": 0.88,
              "heldout_mentions_micro_f1": 0.93}
    [row] = fine_tuning.classifier_rows(report)
    assert (row.rps, row.unit, row.p50_ms) == (25.0, "lines/s", 40000.0)
    single, multi = row.checks
    assert (single.passed, single.measured) == (True, "0.970")
    assert (multi.passed, multi.measured) == (False, "0.880")
    assert "encoding 30.5 s" in row.notes[0] and "micro F1 0.93" in row.notes[0]
