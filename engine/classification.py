"""text-classification post-processing: pure numpy, vectorized over the batch.

Mirrors transformers' TextClassificationPipeline (4.57): the default function comes from
``problem_type`` / ``num_labels``; ``top_k`` absent gives the legacy single best label, ``top_k=k``
the k best sorted by score, ``top_k=None`` every label sorted by score.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .numeric import sigmoid, softmax

__all__ = ["FUNCTIONS", "check_function", "check_top_k", "classify", "default_function", "sigmoid", "softmax"]

FUNCTIONS = ("softmax", "sigmoid", "none")


def default_function(problem_type: str | None, num_labels: int) -> str:
    """The function transformers applies when ``function_to_apply`` is not given."""
    if problem_type == "regression":
        return "none"
    if problem_type == "multi_label_classification" or num_labels == 1:
        return "sigmoid"
    return "softmax"


def check_function(value) -> str | None:
    """Normalize ``function_to_apply`` (case-insensitive; None = model default); InputError otherwise."""
    if value is None:
        return None
    name = getattr(value, "value", value)  # accept transformers' ClassificationFunction enum too
    if isinstance(name, str) and name.lower() in FUNCTIONS:
        return name.lower()
    raise InputError(f"function_to_apply must be one of {', '.join(FUNCTIONS)}, got {value!r}")


def check_top_k(value, name: str = "top_k") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InputError(f"{name} must be a positive int (or None for all), got {value!r}")
    return int(value)


def classify(
    logits: np.ndarray, id2label: dict[int, str], function: str, top_k: int | None = 1, legacy: bool = True
) -> list:
    """Per row of ``logits`` (N, L): ``{"label", "score"}`` (legacy) or a list of them sorted by score."""
    logits = np.asarray(logits, dtype=np.float32)
    if function == "softmax":
        scores = softmax(logits)
    elif function == "sigmoid":
        scores = sigmoid(logits)
    else:
        scores = logits
    labels = [id2label.get(i, f"LABEL_{i}") for i in range(scores.shape[-1])]
    results = []
    for row in scores:
        if legacy and top_k == 1:
            best = int(row.argmax())
            results.append({"label": labels[best], "score": float(row[best])})
            continue
        entries = [{"label": labels[i], "score": float(s)} for i, s in enumerate(row)]
        if not legacy:
            entries.sort(key=lambda e: e["score"], reverse=True)
            if top_k is not None:
                entries = entries[:top_k]
        results.append(entries)
    return results
