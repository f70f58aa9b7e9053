"""bertrt exporter: Hugging Face checkpoint -> optimized, int8-quantized, validated ONNX bundle.

Public API: :func:`export_model` and :data:`SUPPORTED_ARCHITECTURES`. The heavy libraries (torch,
transformers, optimum, onnxruntime's tools) are imported when an export runs, not on import.
"""

from __future__ import annotations

from .convert import SUPPORTED_ARCHITECTURES
from .pipeline import STEPS, export_model

__all__ = ["STEPS", "SUPPORTED_ARCHITECTURES", "export_model"]
