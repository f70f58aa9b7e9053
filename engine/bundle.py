"""The bundle format: what ``bertrt export`` writes and the runtime reads.

A bertrt bundle is a folder::

    model.onnx            optimized fp32 graph
    model.int8.onnx       dynamic int8 quantization of model.onnx
    tokenizer.json        fast tokenizer (HF tokenizers)
    tokenizer_config.json tokenizer settings transformers uses (clean_up_tokenization_spaces, ...)
    config.json           the checkpoint's config (id2label, model_type, max_position_embeddings)
    bundle.json           the manifest (below)

bundle.json keys (schema version 1): schema_version, format ("bertrt-bundle"), task, model_type,
architecture, input_names, output_names, max_length, id2label, problem_type, special_tokens,
files {name: {sha256, bytes}}, fusion, quantization, validation, versions, created, source.
"""

from __future__ import annotations

SCHEMA_VERSION = 1
MANIFEST = "bundle.json"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
