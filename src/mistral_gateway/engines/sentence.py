"""sentence-transformers embeddings (all-MiniLM-L6-v2 by default), offline, CPU, micro-batched.

All model work runs on the engine's batcher threads (``MicroBatcher``): concurrent requests are merged into batches
of up to ``batch_size`` texts, large requests are split into such batches (sorted by length first, then put back in
order). Each worker thread has its own model replica (parameters shared, tokenizer not: HF fast tokenizers must not
be used from two threads at once) and ``threads / workers`` torch threads: on small CPUs, batches computed side by
side with one thread each beat one batch on all threads (OpenMP barriers on tiny matrices mostly spin).

Token counts are exact: the model tokenizer's ``input_ids`` per text, special tokens included, truncated at the
model's maximum sequence length (longer texts are truncated, as ``encode`` does).

Padding: one forward pass costs a fixed overhead plus time per *padded* token, every text padded to the batch's
longest. Merged requests have mixed lengths, so a batch is sorted by token count and cut into length groups, one
``encode`` call each, minimising ``groups x overhead + sum(group size x its longest text)`` (``plan_groups``).
"""

from __future__ import annotations

import copy
import functools
import itertools
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import EmbeddingEngine, Embeddings, EngineError
from mistral_gateway.engines.batching import BatchStats, MicroBatcher
from mistral_gateway.engines.st_lite import LiteSentenceModel, lite_layout

__all__ = ["GROUP_OVERHEAD_TOKENS", "SentenceTransformerEngine", "load", "plan_groups", "workers_and_threads"]

log = logging.getLogger("mistral_gateway.engines")

BATCH_SIZE = 32  # texts per encode call and worker; a 64-text request runs as two calls, side by side
MAX_WAIT_S = 0.002
MAX_QUEUED = 4096
# A forward pass's fixed cost, in padded tokens' worth of compute (all-MiniLM-L6-v2 on CPU: ~7 ms fixed against
# ~0.14 ms per padded token, 2 threads). Only the ratio matters; it decides how finely batches are split.
GROUP_OVERHEAD_TOKENS = 48


class SentenceTransformerEngine:
    """Implements ``EmbeddingEngine``. ``model`` is a loaded ``SentenceTransformer`` (or anything with its
    ``encode``, ``tokenizer`` and ``max_seq_length``); ``replicas`` are more of the same model, one more worker
    thread each."""

    def __init__(self, model: Any, *, replicas: Sequence[Any] = (), name: str = "embeddings",
                 dimensions: int | None = None, batch_size: int = BATCH_SIZE, max_wait: float = MAX_WAIT_S,
                 max_queued: int = MAX_QUEUED, group_overhead: float = GROUP_OVERHEAD_TOKENS) -> None:
        self._model = model
        self.max_tokens: int = int(model.max_seq_length)
        if dimensions is None:
            get_dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            dimensions = int(get_dimension())
        self.dimensions: int = dimensions
        self.batch_size = batch_size
        self.group_overhead = group_overhead
        self._batcher: MicroBatcher[str, tuple[list[float], int]] = MicroBatcher(
            [functools.partial(self._encode, m) for m in (model, *replicas)], max_batch=batch_size,
            max_wait=max_wait, max_queued=max_queued, name=f"embed-{name}")

    @property
    def workers(self) -> int:
        return self._batcher.workers

    @property
    def model(self) -> Any:
        """The first worker's ``SentenceTransformer`` (tests and benchmarks compare with it; serving only calls it
        on that worker's thread)."""
        return self._model

    @property
    def stats(self) -> BatchStats:
        """How many ``encode`` calls ran and for how many texts (tests and benchmarks read it)."""
        return self._batcher.stats

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        if not texts:
            return Embeddings(vectors=[], token_counts=[])
        if len(texts) <= self.batch_size:
            results = await self._batcher.run(list(texts))
        else:
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            ranked = await self._batcher.run([texts[i] for i in order])
            results = [ranked[0]] * len(texts)
            for rank, i in enumerate(order):
                results[i] = ranked[rank]
        return Embeddings(vectors=[vector for vector, _ in results], token_counts=[count for _, count in results])

    def close(self) -> None:
        self._batcher.close()

    # -- on a worker thread, with that worker's replica -------------------------------------------------------
    def _encode(self, model: Any, texts: list[str]) -> list[tuple[list[float], int]]:
        ids = model.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=self.max_tokens,
                              return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        counts = [len(row) for row in ids]
        order = sorted(range(len(texts)), key=counts.__getitem__)
        vectors: list[list[float]] = [[]] * len(texts)
        for start, end in plan_groups([counts[i] for i in order], self.group_overhead):
            group = order[start:end]
            encoded = model.encode([texts[i] for i in group], batch_size=len(group), show_progress_bar=False,
                                   convert_to_numpy=True).tolist()
            for i, vector in zip(group, encoded, strict=True):
                vectors[i] = vector
        return list(zip(vectors, counts, strict=True))


def plan_groups(lengths: Sequence[int], overhead: float = GROUP_OVERHEAD_TOKENS) -> list[tuple[int, int]]:
    """Cut ascending ``lengths`` into contiguous ``(start, end)`` groups minimising
    ``len(groups) * overhead + sum((end - start) * lengths[end - 1])``: the exact optimum, O(n^2) for n <= 64."""
    n = len(lengths)
    best = [0.0] * (n + 1)
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        longest = lengths[end - 1]
        best[end], cut[end] = min((best[start] + overhead + (end - start) * longest, start) for start in range(end))
    groups = []
    end = n
    while end > 0:
        groups.append((cut[end], end))
        end = cut[end]
    return groups[::-1]


def workers_and_threads(entry: ModelEntry) -> tuple[int, int]:
    """(worker threads, torch threads per worker): ``entry.threads`` (default: every core) split evenly between
    as many workers as divide it, ``entry.parallel`` at most."""
    threads = entry.threads or os.cpu_count() or 1
    workers = max(w for w in range(1, max(1, min(entry.parallel, threads)) + 1) if threads % w == 0)
    return workers, threads // workers


def _replica(model: Any) -> Any:
    """Another ``model`` sharing its parameters and buffers (no second copy of the weights) but nothing else."""
    shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, shared)


def load(entry: ModelEntry, path: Path | None, _settings: Settings) -> EmbeddingEngine:
    """Load ``entry``'s model from ``path`` (a sentence-transformers model directory), on the CPU, offline."""
    if path is None:
        raise EngineError(f"model {entry.id!r}: no weights configured (give it a `path` or an `asset`)")
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise EngineError(f"model {entry.id!r}: {path} is not a sentence-transformers model directory")
    # Weights come from disk only: never let the Hugging Face libraries reach the network. Read at their import,
    # which happens just below (set here, not when this module is imported).
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("OMP_PROC_BIND", "true")  # one OpenMP runtime for both engines: see cli.main
    import torch
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # no "Loading weights" bar in the server log
    workers, threads = workers_and_threads(entry)
    torch.set_num_threads(threads)  # process-wide: each worker thread runs its own intra-op team of this size
    layout = lite_layout(path)
    if layout is not None:  # the common layout: transformers alone, ~150 MB less resident than sentence-transformers
        model: Any = LiteSentenceModel(path, layout)
    else:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    model.eval()
    if entry.max_context_length < model.max_seq_length:  # the catalog may only shorten what the model allows
        model.max_seq_length = entry.max_context_length
    engine = SentenceTransformerEngine(model, replicas=[_replica(model) for _ in range(workers - 1)], name=entry.id)
    log.info("loaded %s from %s: %d dimensions, %d tokens max, %d workers x %d torch threads", entry.id, path,
             engine.dimensions, engine.max_tokens, workers, threads)
    return engine
