"""The PyTorch reference: ``transformers.pipeline`` on a checkpoint folder, CPU, for side-by-side scoring.

``bertrt eval --pytorch CHECKPOINT`` uses it for its reference column; it lives in the exporter because it
needs the exporter's stack (torch, transformers), imported when it is called.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["reference_pipeline"]


def reference_pipeline(task: str, checkpoint: str | Path, threads: int | None = None, **pipeline_kwargs):
    """``transformers.pipeline(task)`` on ``checkpoint`` (its own tokenizer, CPU); ImportError without torch."""
    import torch
    import transformers

    if threads:
        torch.set_num_threads(threads)
    return transformers.pipeline(
        task, model=str(checkpoint), tokenizer=str(checkpoint), device=-1, **pipeline_kwargs
    )
