"""The PyTorch reference: ``transformers.pipeline`` on a checkpoint folder (CPU, or CUDA for the GPU
bench), for side-by-side scoring.

``bertrt eval --pytorch CHECKPOINT`` uses it for its reference column; it lives in the exporter because it
needs the exporter's stack (torch, transformers), imported when it is called.
"""

from __future__ import annotations

from pathlib import Path

from bertrt.errors import InputError

__all__ = ["reference_pipeline"]


def reference_pipeline(
    task: str,
    checkpoint: str | Path,
    threads: int | None = None,
    device: int = -1,
    dtype: str = "fp32",
    **pipeline_kwargs,
):
    """``transformers.pipeline(task)`` on ``checkpoint`` (its own tokenizer; the CPU, or the CUDA device
    ``device``; ``dtype`` "fp32" or "fp16"); ImportError without torch."""
    import torch
    import transformers

    if threads:
        torch.set_num_threads(threads)
    if dtype not in ("fp32", "fp16"):
        raise InputError(f"dtype must be 'fp32' or 'fp16', got {dtype!r}")
    if dtype == "fp16":
        pipeline_kwargs["torch_dtype"] = torch.float16
    return transformers.pipeline(
        task, model=str(checkpoint), tokenizer=str(checkpoint), device=device, **pipeline_kwargs
    )
