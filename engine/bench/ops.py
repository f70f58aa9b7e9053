"""The matmul ops a bundle's texts cost: ``a + b·L + c·L²`` per sequence of L tokens (2 ops per multiply-add).

The coefficients come from bundle.json's ``matmul_ops`` (the exporter counted the graph's own MatMul /
Gemm / MatMulIntegerToFloat / attention nodes, ``bertrt.export.opcount``), else from config.json's sizes
(:func:`config_coefficients`: a BERT-like encoder, for bundles exported before the record or foreign
layouts). The lengths are those of the sequences the pipeline feeds its graph (special tokens included,
windows and pairs as the task encodes them, padding not counted): a system's GEMM op/s is then the useful
work it did, whatever it spent on padding.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["OpCount", "config_coefficients", "op_count", "sequence_ops"]

log = logging.getLogger("bertrt")

#: tasks whose head reads one row per token (config estimate: a labels-wide layer on every token)
_TOKEN_HEADS = ("token-classification", "question-answering")
#: tasks whose head reads the pooled first token (config estimate: pooler dense + classifier)
_POOLED_HEADS = ("text-classification", "zero-shot-classification", "rerank")


@dataclass(frozen=True)
class OpCount:
    """Ops per sequence of L tokens, ``a + b·L + c·L²``, and where the coefficients come from."""

    coefficients: tuple[int, int, int]
    source: str  # "bundle.json" (the graph's nodes) or "config.json" (the encoder's sizes)

    def __call__(self, length: int) -> int:
        a, b, c = self.coefficients
        return a + b * length + c * length * length


def _dims(config: Mapping) -> tuple[int, int, int]:
    """(hidden, layers, intermediate) of a BERT-like config (DistilBERT's names accepted too)."""
    try:
        hidden = int(config.get("hidden_size", config.get("dim")))
        layers = int(config.get("num_hidden_layers", config.get("n_layers")))
        inter = int(config.get("intermediate_size", config.get("hidden_dim")))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            "config needs hidden_size, num_hidden_layers and intermediate_size (or DistilBERT's dim, "
            f"n_layers, hidden_dim); got keys {sorted(config)[:12]}"
        ) from exc
    return hidden, layers, inter


def _labels(config: Mapping) -> int:
    labels = config.get("id2label")
    return len(labels) if labels else int(config.get("num_labels", 2))


def config_coefficients(config: Mapping, task: str | None = None) -> tuple[int, int, int]:
    """(a, b, c) of a BERT-like encoder from its config.json: per layer ``2L(4H² + 2HI)`` for the
    Q/K/V/output projections and the FFN and ``4L²H`` for the attention scores and context, plus the
    ``task``'s head (token heads ``2LHC``; pooled heads ``2H² + 2HC``; fill-mask ``2L(H² + HV)``;
    others none)."""
    h, layers, inter = _dims(config)
    a, b, c = 0, layers * 2 * (4 * h * h + 2 * h * inter), layers * 4 * h
    if task in _TOKEN_HEADS:
        b += 2 * h * _labels(config)
    elif task in _POOLED_HEADS:
        a += 2 * h * h + 2 * h * _labels(config)
    elif task == "fill-mask":
        b += 2 * h * h + 2 * h * int(config.get("vocab_size", 0))
    return a, b, c


def op_count(manifest: Mapping, config: Mapping, task: str | None) -> OpCount | None:
    """The bundle's :class:`OpCount`: bundle.json's record, else config.json's estimate; None (logged)
    when neither is there."""
    record = manifest.get("matmul_ops")
    coefficients = record.get("coefficients") if isinstance(record, Mapping) else None
    if (
        isinstance(coefficients, list)
        and len(coefficients) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) for v in coefficients)
    ):
        return OpCount(tuple(coefficients), "bundle.json")
    try:
        return OpCount(config_coefficients(config, task), "config.json")
    except ValueError as exc:
        log.warning("bench: no GEMM op count for this bundle (%s)", exc)
        return None


def sequence_ops(count: OpCount, lengths) -> int:
    """Ops of running sequences of ``lengths`` tokens (each on its own: padding not counted)."""
    return sum(count(int(n)) for n in lengths)
