"""The lean sentence-transformers path gives the very vectors ``SentenceTransformer.encode`` gives, on the real
all-MiniLM-L6-v2 weights; other layouts fall back to sentence-transformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mistral_gateway.engines.assets import resolve_asset
from mistral_gateway.engines.st_lite import LiteSentenceModel, lite_layout

pytestmark = pytest.mark.slow

TEXTS = ["hello", "The weather in Paris is mild today. " * 60, "", "Ünïcödé ✓ 漢字", "short", "a b c d e f g"]


@pytest.fixture(scope="module")
def minilm(weights_dir: Path) -> Path:
    return resolve_asset("all-minilm-l6-v2", weights_dir)


def test_same_vectors_as_sentence_transformers(minilm: Path) -> None:
    from sentence_transformers import SentenceTransformer

    layout = lite_layout(minilm)
    assert layout == ("mean", True, 256, False)
    lite = LiteSentenceModel(minilm, layout)
    reference = SentenceTransformer(str(minilm), device="cpu", local_files_only=True)
    assert lite.max_seq_length == reference.max_seq_length == 256
    assert lite.get_sentence_embedding_dimension() == 384
    for batch_size in (1, 4, 32):
        ours = lite.encode(TEXTS, batch_size=batch_size)
        theirs = reference.encode(TEXTS, batch_size=batch_size, convert_to_numpy=True)
        assert ours.dtype == np.float32 and ours.shape == (len(TEXTS), 384)
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert lite.encode([]).shape == (0, 384)


def _layout_dir(tmp_path: Path, modules: list[dict], pooling: dict) -> Path:
    (tmp_path / "1_Pooling").mkdir(parents=True)
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": True}))
    return tmp_path


T = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
P = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
N = {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
D = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}


@pytest.mark.parametrize(("modules", "pooling", "expected"), [
    ([T, P], {"pooling_mode_cls_token": True}, ("cls", False, 128, True)),
    ([T, P, N], {"pooling_mode_max_tokens": True}, ("max", True, 128, True)),
    ([T, P, D], {"pooling_mode_mean_tokens": True}, None),  # a Dense layer: sentence-transformers itself
    ([T, P], {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True}, None),  # concatenated modes
    ([T, P], {"pooling_mode_weightedmean_tokens": True}, None),
    ([T], {}, None),
])
def test_layouts(tmp_path: Path, modules: list[dict], pooling: dict, expected: tuple | None) -> None:
    assert lite_layout(_layout_dir(tmp_path, modules, pooling)) == expected


def test_not_a_model_directory(tmp_path: Path) -> None:
    assert lite_layout(tmp_path) is None
