"""The rerank head: the cross-encoder's activation, recorded where the runtime reads it.

``CrossEncoder`` (sentence-transformers >= 4) saves its activation in ``config_sentence_transformers.json``
(``activation_fn``) or, before, in config.json's ``sentence_transformers`` record; a bundle keeps only
config.json, so :func:`wrap` writes the one it finds into the model's config (saved into the bundle)
as ``sentence_transformers.activation_fn``. The graph is the sequence classifier's (optimum's
text-classification export).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from bertrt.errors import ExportError, TaskError
from bertrt.tasks.rerank import activation_of

__all__ = ["cross_encoder_ranker", "read_activation", "reference_call", "wrap"]

log = logging.getLogger("bertrt.export")


def read_activation(folder: Path, config) -> str | None:
    """The checkpoint's ``activation_fn`` dotted path (None: CrossEncoder's default, sigmoid)."""
    path = folder / "config_sentence_transformers.json"
    if path.is_file():
        try:
            settings = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ExportError(f"{path}: cannot read ({exc})") from exc
        if isinstance(settings, dict) and settings.get("activation_fn"):
            return str(settings["activation_fn"])
    record = getattr(config, "sentence_transformers", None)
    if isinstance(record, dict) and record.get("activation_fn"):
        return str(record["activation_fn"])
    return getattr(config, "sbert_ce_default_activation_function", None)


def wrap(model, folder: Path):
    """The sequence classifier unchanged, its config carrying the activation; TaskError unless it has
    one label (a cross-encoder's score)."""
    if model.config.num_labels != 1:
        raise TaskError(
            f"{folder}: rerank needs a one-label cross-encoder, this head has {model.config.num_labels}"
        )
    activation = read_activation(folder, model.config)
    if activation:
        record = dict(getattr(model.config, "sentence_transformers", None) or {})
        record["activation_fn"] = activation
        model.config.sentence_transformers = record
    activation_of({"sentence_transformers": {"activation_fn": activation}})  # one bertrt applies
    log.info("rerank: activation %s", activation or "sigmoid (default)")
    return model


def _cross_encoder(checkpoint, threads: int | None):
    """sentence-transformers' ``CrossEncoder`` on ``checkpoint`` (the CPU); TaskError unless it gives one
    score per pair."""
    import torch
    from sentence_transformers import CrossEncoder

    if threads:
        torch.set_num_threads(threads)
    model = CrossEncoder(str(checkpoint), device="cpu")
    if model.config.num_labels != 1:
        raise TaskError(
            f"{checkpoint}: a cross-encoder reference gives one score per pair, this head has "
            f"{model.config.num_labels} labels"
        )
    return model


def reference_call(checkpoint, threads: int | None = None, options: dict | None = None):
    """``bertrt bench``'s PyTorch reference: ``CrossEncoder.predict`` on every (text, document) pair of a
    call, one ``predict`` (its batches), ranked as the task ranks (the documents of ``options``)."""
    from bertrt.tasks.rerank import rank

    model = _cross_encoder(checkpoint, threads)
    documents = list((options or {}).get("documents") or ())

    def call(texts: list, batch_size: int) -> list:
        pairs = [(text, doc) for text in texts for doc in documents]
        scores = model.predict(pairs, batch_size=batch_size, convert_to_numpy=True)
        n = len(documents)
        return [rank(scores[i * n : (i + 1) * n], "none") for i in range(len(texts))]

    return call


def cross_encoder_ranker(checkpoint, threads: int | None = None, batch_size: int = 32):
    """``bertrt eval --pytorch``'s reference: ``ranker(query, documents) -> [{"index", "score"}]``, best
    first, the scores of ``CrossEncoder.predict`` (with its activation) on the query's pairs."""
    from bertrt.tasks.rerank import rank

    model = _cross_encoder(checkpoint, threads)

    def ranker(query: str, documents: list[str]) -> list[dict]:
        pairs = [(query, doc) for doc in documents]
        return rank(model.predict(pairs, batch_size=batch_size, convert_to_numpy=True), "none")

    return ranker
