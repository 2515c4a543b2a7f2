"""Sentence-transformers model directories of the common shape (Transformer → Pooling → optional Normalize), run
with ``transformers`` alone.

Why: importing ``sentence_transformers`` pulls in scipy, scikit-learn, sympy and more — about 150 MB of resident
memory in the server for code an embedding request never runs. For these layouts the computation is a few lines
and gives the same vectors (tests compare them with ``SentenceTransformer.encode``); any other layout (Dense
layers, other pooling modes, custom modules) is loaded with sentence-transformers itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["LiteSentenceModel", "lite_layout"]

_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"
_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}


def lite_layout(path: Path) -> tuple[str, bool, int | None, bool] | None:
    """(pooling mode, normalize, max_seq_length, lower-case) if ``path`` has the supported shape, else None."""
    try:
        modules = json.loads((path / "modules.json").read_text())
        types = [m["type"] for m in modules]
        if types not in ([_TRANSFORMER, _POOLING], [_TRANSFORMER, _POOLING, _NORMALIZE]) or modules[0]["path"]:
            return None
        pooling = json.loads((path / modules[1]["path"] / "config.json").read_text())
        bert = json.loads((path / "sentence_bert_config.json").read_text())
    except (OSError, ValueError, KeyError, IndexError):
        return None
    on = [mode for key, mode in _MODES.items() if pooling.get(key)]
    others = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v and k not in _MODES]
    if len(on) != 1 or others or pooling.get("include_prompt") is False:
        return None
    return on[0], len(types) == 3, bert.get("max_seq_length"), bool(bert.get("do_lower_case"))


class LiteSentenceModel:
    """What the embedding engine uses of a ``SentenceTransformer``: ``encode``, ``tokenizer``, ``max_seq_length``,
    the embedding dimension, and parameters/buffers (so worker replicas can share the weights)."""

    def __init__(self, path: Path, layout: tuple[str, bool, int | None, bool]) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.pooling, self.normalize, max_len, self.lower_case = layout
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True)
        self.model.eval()
        limit = int(getattr(self.model.config, "max_position_embeddings", 512))
        self.max_seq_length = min(max_len or limit, limit)

    def get_sentence_embedding_dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def eval(self) -> LiteSentenceModel:
        self.model.eval()
        return self

    def parameters(self) -> Iterator[Any]:
        return self.model.parameters()

    def buffers(self) -> Iterator[Any]:
        return self.model.buffers()

    def encode(self, sentences: Sequence[str], batch_size: int = 32, show_progress_bar: bool = False,
               convert_to_numpy: bool = True, **_: Any) -> Any:
        import numpy as np
        import torch

        texts = [s.lower() for s in sentences] if self.lower_case else list(sentences)
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(texts[start:start + batch_size], padding=True, truncation="longest_first",
                                   max_length=self.max_seq_length, return_tensors="pt")
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
                out.append(self._pool(hidden, batch["attention_mask"]).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.get_sentence_embedding_dimension()), np.float32)

    def _pool(self, hidden: Any, mask: Any) -> Any:
        import torch

        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            if self.pooling == "max":
                pooled = hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
            else:
                pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled
