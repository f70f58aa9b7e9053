"""Parity: the engine on an fp32 ONNX model against transformers.pipeline (PyTorch) on the same checkpoint.

Every architecture-table row (WordPiece, byte-level BPE and Unigram/Metaspace tokenizers; tests/builders.py)
and every task, on tests/corpus.py PARITY_TEXTS and BLANK_TEXTS. Structure, keys, labels, tokens and words
must be equal; scores and vectors within 1e-4. Run on the bertrt bundle (when the exporter is present) and
on an Optimum folder.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.builders import ARCHS
from tests.corpus import BLANK_TEXTS, PARITY_TEXTS

TOL = 1e-4
SOURCES = ("bundle", "optimum")
# Optimum's folder layout exercises the runtime's foreign-layout reading (max length from the config and
# tokenizer_config, no manifest, unfused graph), which does not depend on the architecture beyond these
# rows: BERT/RoBERTa/DistilBERT, Unigram with RoBERTa-style offsets (XLM-R), token types in the tokenizer
# but not in the graph (DeBERTa-v3), 8,192 positions (ModernBERT). The other rows run the bundle only: each
# (row, task) costs one more export, and CI time is budgeted.
OPTIMUM_ARCHS = ("bert", "roberta", "distilbert", "xlm-roberta", "deberta-v2", "modernbert")
CASES = [
    (arch, source) for arch in ARCHS for source in SOURCES if source == "bundle" or arch in OPTIMUM_ARCHS
]
# the corpus with the empty and blank texts, the long text (longer than the max length) last
TEXTS = PARITY_TEXTS[:-1] + BLANK_TEXTS + PARITY_TEXTS[-1:]


def assert_same(ref, got, path="result"):
    """Same structure, keys (in order), values; floats within TOL and plain Python floats/ints on our side."""
    if isinstance(ref, dict):
        assert isinstance(got, dict), f"{path}: expected dict, got {type(got).__name__}"
        assert list(got) == list(ref), f"{path}: keys {list(got)} != {list(ref)}"
        for key in ref:
            assert_same(ref[key], got[key], f"{path}.{key}")
    elif isinstance(ref, list):
        assert isinstance(got, list), f"{path}: expected list, got {type(got).__name__}"
        assert len(got) == len(ref), f"{path}: {len(got)} items != {len(ref)}\n got={got}\n ref={ref}"
        for i, (r, g) in enumerate(zip(ref, got)):
            assert_same(r, g, f"{path}[{i}]")
    elif isinstance(ref, (float, np.floating)):
        assert type(got) is float, f"{path}: {type(got).__name__} is not a plain float"
        assert abs(float(ref) - got) <= TOL, f"{path}: {got} vs reference {ref}"
    elif isinstance(ref, (int, np.integer)) and not isinstance(ref, bool):
        assert type(got) is int, f"{path}: {type(got).__name__} is not a plain int"
        assert got == int(ref), f"{path}: {got} != {ref}"
    else:
        assert got == ref, f"{path}: {got!r} != {ref!r}"


@pytest.fixture(scope="module")
def folders(request):
    def get(source, arch, task):
        name = "runtime_bundle" if source == "bundle" else "optimum_folder"
        return request.getfixturevalue(name)(arch, task)

    return get


def _reference(tiny_checkpoint, arch, task, **kwargs):
    transformers = pytest.importorskip("transformers")
    return transformers.pipeline(task, model=str(tiny_checkpoint(arch, task)), device="cpu", **kwargs)


@pytest.mark.parametrize("arch,source", CASES)
def test_text_classification_parity(arch, source, folders, tiny_checkpoint):
    import bertrt

    ref = _reference(tiny_checkpoint, arch, "text-classification")
    pipe = bertrt.pipeline(None, folders(source, arch, "text-classification"), precision="fp32")
    assert pipe.task == "text-classification"
    for options in (
        {},
        {"top_k": None},
        {"top_k": 2},
        {"function_to_apply": "sigmoid"},
        {"top_k": 1, "function_to_apply": "none"},
    ):
        # transformers does not truncate by default (the long text would overflow the position table).
        assert_same(ref(TEXTS, truncation=True, **options), pipe(TEXTS, **options))
        assert_same(ref(TEXTS[0], **options), pipe(TEXTS[0], **options))
    pair = {"text": "Maria loves Groningen.", "text_pair": "She lives in Paris."}
    assert_same(ref(pair), pipe(pair))
    assert_same(ref([pair, pair], top_k=None), pipe([pair, pair], top_k=None))


@pytest.mark.parametrize("arch,source", CASES)
def test_fill_mask_parity(arch, source, folders, tiny_checkpoint):
    import bertrt

    ref = _reference(tiny_checkpoint, arch, "fill-mask")
    pipe = bertrt.pipeline(None, folders(source, arch, "fill-mask"), precision="fp32")
    mask = ref.tokenizer.mask_token
    texts = [t.replace(" ", f" {mask} ", 1) if " " in t else t + mask for t in TEXTS[:-1]]
    texts.append(f"{mask} loves {mask}.")  # two masks: nested lists
    for options in (
        {},
        {"top_k": 3},
        {"targets": ["Paris", "the", "Groningen"]},
        {"targets": "a", "top_k": 2},
    ):
        assert_same(ref(texts, **options), pipe(texts, **options))
    assert_same(ref(texts[0]), pipe(texts[0]))


@pytest.mark.parametrize("arch,source", CASES)
def test_feature_extraction_parity(arch, source, folders, tiny_checkpoint):
    import bertrt

    ref = _reference(tiny_checkpoint, arch, "feature-extraction")
    pipe = bertrt.pipeline(None, folders(source, arch, "feature-extraction"), precision="fp32")
    expected = ref(TEXTS, truncation=True)
    got = pipe(TEXTS)
    assert len(got) == len(expected)
    for r, g in zip(expected, got):
        r = np.asarray(r, dtype=np.float32)
        assert isinstance(g, np.ndarray) and g.dtype == np.float32 and g.shape == r.shape
        np.testing.assert_allclose(g, r, atol=TOL, rtol=0)
    single = pipe(TEXTS[0])
    np.testing.assert_allclose(single, np.asarray(ref(TEXTS[0])), atol=TOL, rtol=0)


@pytest.mark.parametrize("arch,source", CASES)
def test_token_classification_parity(arch, source, folders, tiny_checkpoint):
    import bertrt

    pipe = bertrt.pipeline("ner", folders(source, arch, "token-classification"), precision="fp32")
    short = [t for t in TEXTS if len(t) < 200]
    ref = _reference(tiny_checkpoint, arch, "token-classification")
    assert_same(ref(short), pipe(short))
    assert_same(ref(short, ignore_labels=[]), pipe(short, ignore_labels=[]))
    for strategy in ("simple", "first", "average", "max"):
        ref = _reference(tiny_checkpoint, arch, "token-classification", aggregation_strategy=strategy)
        # stride: the long text runs as overlapping windows, merged as transformers merges them
        assert_same(ref(TEXTS, stride=8), pipe(TEXTS, aggregation_strategy=strategy, stride=8))
