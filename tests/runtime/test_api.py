"""The public API of the runtime package is explicit and pinned."""

from __future__ import annotations

import inspect

import bertrt


def test_public_api_is_pinned():
    assert bertrt.__all__ == [
        "TASKS",
        "BertrtError",
        "Bundle",
        "BundleError",
        "InputError",
        "InputTypeError",
        "ModelFileNotFoundError",
        "Pipeline",
        "TaskError",
        "__version__",
        "errors",
        "load_bundle",
        "pipeline",
    ]
    for name in bertrt.__all__:
        assert getattr(bertrt, name) is not None


def test_pipeline_signatures():
    params = inspect.signature(bertrt.pipeline).parameters
    assert list(params)[:6] == ["task", "bundle", "precision", "threads", "providers", "model_file"]
    # None: the bundle's tuning.json winner on a matching CPU, else int8 (bertrt.backends, issue 11)
    assert params["precision"].default is None and params["backend"].default == "auto"
    call = inspect.signature(bertrt.Pipeline.__call__).parameters
    assert list(call)[:4] == ["self", "inputs", "batch_size", "max_tokens_per_batch"]
    # None: the bundle's tuned batch size on a matching CPU, else 32 (Pipeline.batch_size, issue 11)
    assert call["batch_size"].default is None
    assert callable(bertrt.Pipeline.tokenize)


def test_errors_are_one_family():
    assert issubclass(bertrt.ModelFileNotFoundError, bertrt.BundleError)
    assert issubclass(bertrt.InputTypeError, TypeError) and issubclass(bertrt.InputTypeError, ValueError)
    for cls in (bertrt.BundleError, bertrt.TaskError, bertrt.InputError):
        assert issubclass(cls, bertrt.BertrtError)
    assert bertrt.errors.BertrtError is bertrt.BertrtError
