"""The PyTorch side of ``bertrt bench --reference``: the checkpoint's transformers pipeline as a bench system.

It lives in the exporter because it needs torch and transformers (imported when it is called); the bench
itself (``bertrt.bench``) is runtime code and loads this module only when a reference is given. The
answers are the task's final results, as bertrt's pipeline gives them with ``bertrt.bench``'s call
options: NER entities grouped with ``aggregation_strategy="first"``, labels, fill-mask candidates, and
feature-extraction token vectors mean-pooled over the text's own tokens (padding cut off). Texts are run
length-sorted (:func:`bertrt.ordering.sorted_call`), as bertrt sorts them, so both pad alike.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from bertrt.ordering import sorted_call
from bertrt.tasks import get_task

from .reference import reference_pipeline

__all__ = ["cuda_available", "pipeline_call", "reference_call", "sentence_transformers_call"]


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (False without torch)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def reference_call(
    task: str, checkpoint: str | Path, threads: int | None = None, device: int = -1, dtype: str = "fp32"
):
    """``call(texts, batch_size) -> results`` of ``transformers.pipeline(task)`` on ``checkpoint``, built
    with the task's ``reference_pipeline`` arguments: the CPU (``device=-1``) or a CUDA device, at
    ``dtype`` ("fp32", or "fp16" on CUDA); or of sentence-transformers where the task's
    ``reference_library`` says so."""
    spec = get_task(task)
    if spec.reference_module:  # sentence-transformers' classes (sparse-embedding, rerank), on the CPU
        if device != -1 or dtype != "fp32":
            raise ValueError(f"the {task} reference runs on the CPU at fp32 only")
        module = importlib.import_module(spec.reference_module)
        return module.reference_call(checkpoint, threads, dict(spec.reference_options))
    if spec.reference_library == "sentence-transformers":
        return sentence_transformers_call(task, checkpoint, threads, device, dtype)
    pipe_kwargs = dict(get_task(task).reference_pipeline)
    pipe = reference_pipeline(task, checkpoint, threads, device=device, dtype=dtype, **pipe_kwargs)
    return pipeline_call(pipe, task)


def sentence_transformers_call(
    task: str, checkpoint: str | Path, threads: int | None = None, device: int = -1, dtype: str = "fp32"
):
    """``SentenceTransformer(checkpoint).encode`` (the CPU, or CUDA device ``device``; fp16 halves the
    model) with the task's ``reference_call`` arguments, one vector per text; texts length-sorted, as
    bertrt sorts them."""
    import torch
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(threads)
    model = SentenceTransformer(str(checkpoint), device="cpu" if device < 0 else f"cuda:{device}")
    if dtype == "fp16":
        model.half()
    kwargs = dict(get_task(task).reference_call)
    return lambda texts, bs: sorted_call(lambda t: list(model.encode(t, batch_size=bs, **kwargs)), texts)


def pipeline_call(pipe, task: str):
    """A transformers pipeline's call with the task's ``reference_call`` arguments, its results made final
    (see the module): mean-pooled where bertrt's answers are (its ``reference_options`` pool by mean)."""
    spec = get_task(task)
    call_kwargs = dict(spec.reference_call)
    if spec.reference_options.get("pooling") != "mean":

        def call(texts: list, bs: int) -> list:
            out = pipe(texts, batch_size=bs, **call_kwargs)
            # transformers' question-answering pipeline answers a one-item list with the bare dict
            return [out] if len(texts) == 1 and isinstance(out, dict) else out

        return lambda texts, bs: sorted_call(lambda t: call(t, bs), texts)

    def embed(texts: list, bs: int) -> list:
        lengths = [len(ids) for ids in pipe.tokenizer(list(texts), truncation=True)["input_ids"]]
        tensors = sorted_call(lambda t: pipe(t, batch_size=bs, return_tensors=True, truncation=True), texts)
        return [t[0, :n].float().mean(dim=0).cpu().numpy() for t, n in zip(tensors, lengths)]

    return embed
