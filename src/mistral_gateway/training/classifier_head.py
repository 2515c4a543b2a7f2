"""From a fit to the head file the ``classifier`` engine serves (``engines.head_format``): the targets' labels, the
embedding as the only feature, the encoder's probe (so serving refuses a different encoder), 0.5 as every
multi-label threshold, and what the training was in the header's free-form ``training``.

``check_targets`` says up front what the head format cannot hold (names, label counts, a multi-label label shared by
two targets: thresholds are keyed by label), so a job can refuse such targets before anything is encoded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mistral_gateway.engines.base import ClassifierTarget, ClassifierTargetSpec
from mistral_gateway.engines.head_format import ClassifierHead, EncoderInfo, FeatureSpec, save_head

__all__ = ["THRESHOLD", "build_head", "check_targets", "write_head"]

THRESHOLD = 0.5  # the multi-label decision point the fit's loss aims at (configuration may override it)


def check_targets(targets: Sequence[ClassifierTargetSpec]) -> None:
    """A ``ValueError`` (``HeadError``) saying why these targets cannot be one head, or nothing: the head format's
    own checks, run on a head of these targets with zero weights."""
    zero = {t.name: (np.zeros((len(t.labels), 1), np.float32), np.zeros(len(t.labels), np.float32)) for t in targets}
    build_head(EncoderInfo("check", 1, 8), targets, zero)


def build_head(encoder: EncoderInfo, targets: Sequence[ClassifierTargetSpec],
               weights: Mapping[str, tuple[np.ndarray, np.ndarray]], training: Mapping[str, Any] | None = None
               ) -> ClassifierHead:
    return ClassifierHead(
        encoder=encoder,
        features=(FeatureSpec("embedding", encoder.dimensions),),
        targets=tuple(ClassifierTarget(t.name, tuple(t.labels), t.multi_label) for t in targets),
        weights={name: w for name, (w, _) in weights.items()},
        biases={name: b for name, (_, b) in weights.items()},
        thresholds={label: THRESHOLD for t in targets if t.multi_label for label in t.labels},
        training=dict(training or {}),
    )


def write_head(head: ClassifierHead, path: Path) -> None:
    scratch = path.with_name(path.name + ".tmp")
    save_head(head, scratch)
    os.replace(scratch, path)  # a served head is never half written
