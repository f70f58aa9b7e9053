"""Tiny sentence-transformers models built with sentence-transformers' own classes, and bundles of them.

``st_checkpoint(arch, key)``: a ``SentenceTransformer`` saved with ``.save()`` on the tiny
``feature-extraction`` checkpoint of ``arch`` (tests/builders.py), with the modules :data:`VARIANTS`
names for ``key`` (pooling modes, Normalize, prompts, include_prompt, max_seq_length), cached on disk.
``build_st_dense_checkpoint``: the same with Dense modules after the pooling (:data:`DENSE_VARIANTS`), whose
bundles the exporter builds (the Dense weights go in the graph).
``st_bundle(arch, key)``: a sentence-embedding bundle of it: the cached feature-extraction bundle of the
same checkpoint (same graph) with the checkpoint's sentence-transformers record, as the exporter reads it
(:func:`bertrt.export.sentence_transformers.read_settings`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

__all__ = ["DENSE_VARIANTS", "VARIANTS", "build_st_checkpoint", "build_st_dense_checkpoint", "st_bundle_from"]

#: key -> (pooling mode(s), normalize, include_prompt, prompts, default prompt name, max_seq_length)
VARIANTS = {
    "mean-norm": ("mean", True, True, None, None, None),
    "cls": ("cls", False, True, None, None, None),
    "max": ("max", False, True, None, None, None),
    "mean_sqrt_len_tokens": ("mean_sqrt_len_tokens", False, True, None, None, None),
    "weightedmean": ("weightedmean", False, True, None, None, None),
    "lasttoken": ("lasttoken", False, True, None, None, None),
    "cls+mean": (("cls", "mean"), False, True, None, None, None),
    "short": ("mean", False, True, None, None, 12),
    "prompts": ("mean", True, True, {"query": "query: ", "doc": "passage: "}, "query", None),
    "prompts-excluded": ("mean", False, False, {"query": "Represent the question: "}, None, None),
}

#: key -> (pooling mode, normalize, Dense layers as (out_features, activation class name))
DENSE_VARIANTS = {
    "dense-cls": ("cls", False, ((24, "Tanh"),)),
    "dense-mean": ("mean", True, ((24, "Tanh"), (8, "Identity"))),
}


def build_st_checkpoint(checkpoint: Path, key: str, out: Path) -> Path:
    """Save the sentence-transformers model of variant ``key`` on ``checkpoint`` into ``out``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    modes, normalize, include_prompt, prompts, default, length = VARIANTS[key]
    torch.manual_seed(0)
    transformer = Transformer(str(checkpoint), max_seq_length=length)
    dim = transformer.get_embedding_dimension()
    modules = [transformer, Pooling(dim, pooling_mode=modes, include_prompt=include_prompt)]
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, prompts=prompts, default_prompt_name=default, device="cpu")
    model.save(str(out))
    return out


def build_st_dense_checkpoint(checkpoint: Path, key: str, out: Path) -> Path:
    """Save the sentence-transformers model of Dense variant ``key`` on ``checkpoint`` into ``out``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    mode, normalize, layers = DENSE_VARIANTS[key]
    torch.manual_seed(0)
    transformer = Transformer(str(checkpoint))
    dim = transformer.get_embedding_dimension()
    modules = [transformer, Pooling(dim, pooling_mode=mode)]
    for features, activation in layers:
        modules.append(Dense(dim, features, activation_function=getattr(torch.nn, activation)()))
        dim = features
    if normalize:
        modules.append(Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(out))
    return out


def st_bundle_from(fe_bundle: Path, st_folder: Path, out: Path) -> Path:
    """A copy of the feature-extraction bundle ``fe_bundle`` as a sentence-embedding bundle carrying
    ``st_folder``'s sentence-transformers record."""
    from bertrt.bundle import MANIFEST
    from bertrt.export.sentence_transformers import read_settings

    shutil.copytree(fe_bundle, out)
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    manifest["task"] = "sentence-embedding"
    manifest["sentence_transformers"] = read_settings(st_folder)
    (out / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return out
