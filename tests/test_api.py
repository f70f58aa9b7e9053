"""The public API of the runtime package is explicit and pinned."""

from __future__ import annotations

import inspect

import engine


def test_public_api_is_pinned():
    assert engine.__all__ == [
        "TASKS", "BertrtError", "Bundle", "BundleError", "InputError", "InputTypeError", "ModelFileNotFoundError",
        "Pipeline", "TaskError", "__version__", "errors", "load_bundle", "pipeline",
    ]
    for name in engine.__all__:
        assert getattr(engine, name) is not None


def test_pipeline_signatures():
    params = inspect.signature(engine.pipeline).parameters
    assert list(params)[:6] == ["task", "bundle", "precision", "threads", "providers", "model_file"]
    assert params["precision"].default == "int8"
    call = inspect.signature(engine.Pipeline.__call__).parameters
    assert list(call)[:4] == ["self", "inputs", "batch_size", "max_tokens_per_batch"]
    assert call["batch_size"].default == 32
    assert callable(engine.Pipeline.tokenize)


def test_errors_are_one_family():
    assert issubclass(engine.ModelFileNotFoundError, engine.BundleError)
    assert issubclass(engine.InputTypeError, TypeError) and issubclass(engine.InputTypeError, ValueError)
    for cls in (engine.BundleError, engine.TaskError, engine.InputError):
        assert issubclass(cls, engine.BertrtError)
    assert engine.errors.BertrtError is engine.BertrtError
