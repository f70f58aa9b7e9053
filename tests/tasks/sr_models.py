"""Tiny sentence-transformers models for the sparse-embedding and rerank parity tests, built with
sentence-transformers' own classes on the tiny random checkpoints of :mod:`tests.builders`.

``build_splade``: a ``SparseEncoder`` (``MLMTransformer`` + ``SpladePooling``) on a tiny masked-LM;
``build_cross_encoder``: a ``CrossEncoder`` on a tiny one-label sequence classifier. Each is saved with
the model's own ``save`` / ``save_pretrained``, so the folders are what users export.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.builders import _config, _hf_tokenizer, build_tiny_checkpoint

__all__ = ["build_cross_encoder", "build_splade"]


def build_splade(arch: str, out_dir: Path, strategy: str = "max", activation: str = "relu") -> Path:
    """A tiny SparseEncoder (MLMTransformer + SpladePooling) of ``arch`` saved in ``out_dir``."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

    mlm = out_dir.parent / f"{out_dir.name}-mlm"
    build_tiny_checkpoint(arch, "fill-mask", mlm)
    model = SparseEncoder(
        modules=[MLMTransformer(str(mlm)), SpladePooling(strategy, activation_function=activation)],
        device="cpu",
    )
    model.save(str(out_dir))
    shutil.rmtree(mlm, ignore_errors=True)
    return out_dir


def build_cross_encoder(arch: str, out_dir: Path, seed: int = 0) -> Path:
    """A tiny CrossEncoder (a one-label sequence classifier of ``arch``) saved in ``out_dir``."""
    import torch
    import transformers
    from sentence_transformers import CrossEncoder

    tokenizer = _hf_tokenizer(arch)
    config = _config(arch, len(tokenizer), tokenizer)
    config.num_labels = 1
    torch.manual_seed(seed)
    model = transformers.AutoModelForSequenceClassification.from_config(config).eval()
    with torch.no_grad():  # spread the scores: the ranking compares decisions, not ties
        for name, param in model.named_parameters():
            if name.startswith(("classifier", "pre_classifier")) and name.endswith("weight"):
                param.mul_(8.0)
    raw = out_dir.parent / f"{out_dir.name}-raw"
    model.save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    CrossEncoder(str(raw), device="cpu").save_pretrained(str(out_dir))
    shutil.rmtree(raw, ignore_errors=True)
    return out_dir
