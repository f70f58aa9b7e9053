"""The public API of the runtime package is explicit and pinned."""

from __future__ import annotations

import inspect

import bertrt


def test_public_api_is_pinned():
    public = (
        "TASKS BertrtError Bundle BundleError InputError InputTypeError ModelFileNotFoundError"
        " Pipeline TaskError __version__ errors load_bundle pipeline"
    )
    assert sorted(bertrt.__all__) == sorted(public.split())  # exactly these names, each once
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


def test_drop_in_swap_from_transformers(tiny_bundle, tiny_checkpoint):
    """issue 18 item 13: what code written for transformers.pipeline passes works unchanged."""
    import warnings

    import pytest
    import transformers

    from bertrt.errors import InputError

    cls = tiny_bundle("bert", "text-classification")
    texts = ["Maria loves Groningen.", "The plot? Not so much."]
    pipe = bertrt.pipeline("text-classification", model=cls, device=-1, precision="fp32")
    reference = transformers.pipeline(
        "text-classification", model=str(tiny_checkpoint("bert", "text-classification")), device=-1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # return_all_scores is deprecated in transformers
        for inputs in (texts[0], texts):
            expected = reference(inputs, return_all_scores=True, truncation=True)
            got = pipe(inputs, return_all_scores=True, truncation=True)
            assert [[e["label"] for e in row] for row in got] == [
                [e["label"] for e in row] for row in expected
            ]
            assert got[0][0]["score"] == pytest.approx(expected[0][0]["score"], abs=1e-4)
    assert pipe(texts, return_all_scores=False) == pipe(texts)
    # a generator in, an iterator of results out (transformers' PipelineIterator)
    streamed = pipe(t for t in texts)
    assert not isinstance(streamed, list) and list(streamed) == pipe(texts)
    # defaults given at build are every call's; a call's own option wins
    ner = tiny_bundle("bert", "token-classification")
    simple = bertrt.pipeline("ner", ner, precision="fp32", aggregation_strategy="simple")
    plain = bertrt.pipeline("ner", ner, precision="fp32")
    assert simple(texts) == plain(texts, aggregation_strategy="simple")
    assert simple(texts, aggregation_strategy="none") == plain(texts)
    assert bertrt.pipeline("text-classification", cls, precision="fp32", top_k=2)("hi") == pipe("hi", top_k=2)
    # what bertrt cannot do is refused, clearly
    with pytest.raises(InputError, match="not an option|unknown|does not take"):
        bertrt.pipeline("ner", ner, precision="fp32", trust_remote_code=True)
    with pytest.raises(InputError, match="device='mps'"):
        bertrt.pipeline("ner", model=ner, device="mps")
    with pytest.raises(InputError, match="truncation=False is not supported"):
        pipe("hi", truncation=False)
    with pytest.raises(InputError, match="not both"):
        bertrt.pipeline("ner", ner, model=ner)
