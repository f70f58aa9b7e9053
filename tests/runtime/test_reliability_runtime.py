"""Reliability of the runtime core (issue 14): invalid text (item 4) and an empty text_pair (item 7).

* Item 4: a text the tokenizer cannot take (a lone surrogate, e.g. ``"\\ud800"``, or an undecodable byte
  kept by ``surrogateescape``) gave a raw ``TypeError: TextEncodeInput must be ...`` from the tokenizer and
  failed the whole batch. Every task now checks each item where inputs are validated and raises an
  InputError naming the item's index (and text / text_pair), before any work.
* Item 7: ``{"text": a, "text_pair": ""}`` encoded ``[CLS] a [SEP] [SEP]``; transformers' tokenizer takes
  an empty text_pair as no pair (``[(text, text_pair)] if text_pair else [text]``), so its pipeline
  scores ``a`` alone. The runtime does the same.
"""

from __future__ import annotations

import pytest

import bertrt
from bertrt.errors import BertrtError, InputError
from bertrt.tokenize import check_text
from tests.builders import ARCHS
from tests.runtime.test_runtime_parity import assert_same

TASKS = ("feature-extraction", "fill-mask", "text-classification", "token-classification")


@pytest.fixture(scope="module")
def pipes(runtime_bundle):
    cache = {}

    def get(arch: str, task: str):
        if (arch, task) not in cache:
            cache[arch, task] = bertrt.pipeline(task, runtime_bundle(arch, task), precision="fp32", threads=1)
        return cache[arch, task]

    return get


class _NoRun:
    """Makes the pipeline's session fail if the model runs (the checks come before any work)."""

    def __init__(self, pipe):
        self.pipe = pipe

    def __enter__(self):
        def boom(batch):
            raise AssertionError("the model ran although the call should have failed before any work")

        self.pipe.session.run = boom

    def __exit__(self, *exc):
        del self.pipe.session.run


# -- item 4: invalid Unicode ---------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("bad, code, at", [("ab\ud800c", "D800", 2), ("x\udcff", "DCFF", 1)])
def test_invalid_unicode_names_the_item_for_every_task(pipes, task, bad, code, at):
    pipe = pipes("bert", task)
    good = "Paris [MASK] nice." if task == "fill-mask" else "Paris is nice."
    if task == "fill-mask":
        bad = bad + " [MASK]"
    with _NoRun(pipe):
        with pytest.raises(InputError) as info:
            pipe([good, good, good, bad])
        assert (
            str(info.value)
            == f"input at index 3 is not valid Unicode: lone surrogate U+{code} at character {at}"
        )
        assert isinstance(info.value, BertrtError) and not isinstance(info.value, TypeError)
        with pytest.raises(InputError, match=rf"^input is not valid Unicode: lone surrogate U\+{code}"):
            pipe(bad)
    assert len(pipe([good, good])) == 2  # the pipeline still works


@pytest.mark.parametrize(
    "pair, field",
    [({"text": "ok", "text_pair": "b\ud800"}, "text_pair"), ({"text": "\udc80", "text_pair": "ok"}, "text")],
)
def test_invalid_unicode_in_a_text_pair_names_text_or_text_pair(pipes, pair, field):
    pipe = pipes("bert", "text-classification")
    with _NoRun(pipe):
        with pytest.raises(InputError, match=rf"^input at index 1 \({field}\) is not valid Unicode: lone"):
            pipe([{"text": "fine", "text_pair": "too"}, pair])
        with pytest.raises(InputError, match=rf"^input \({field}\) is not valid Unicode"):
            pipe(pair)


def test_invalid_unicode_in_tokenize_targets_and_check_inputs(pipes):
    ner = pipes("bert", "token-classification")
    with pytest.raises(
        InputError, match="^text is not valid Unicode: lone surrogate U\\+D800 at character 0"
    ):
        ner.tokenize("\ud800")
    with _NoRun(ner):  # the checks of a call, without the call (the server validates a request with it)
        assert ner.check_inputs(["fine", "also fine"]) is None
        with pytest.raises(InputError, match="^input at index 1 is not valid Unicode"):
            ner.check_inputs(["fine", "\ud800"])
    fill = pipes("bert", "fill-mask")
    with pytest.raises(InputError, match="^target at index 1 is not valid Unicode"):
        fill("Paris [MASK] nice.", targets=["the", "\ud800"])


def test_check_text():
    check_text("plain, émoji 🙂, CJK 中文, RTL \u202e, zero-width \u200b")  # valid Unicode passes
    with pytest.raises(
        InputError, match=r"^line 7 is not valid Unicode: lone surrogate U\+DE00 at character 3$"
    ):
        check_text("abc\ude00", "line 7")


# -- item 7: an empty text_pair is no pair -------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_empty_text_pair_matches_transformers(runtime_bundle, tiny_checkpoint, arch):
    transformers = pytest.importorskip("transformers")
    ref = transformers.pipeline(
        "text-classification", model=str(tiny_checkpoint(arch, "text-classification"))
    )
    pipe = bertrt.pipeline(None, runtime_bundle(arch, "text-classification"), precision="fp32", threads=1)
    text = "Maria loves Groningen."
    empty = {"text": text, "text_pair": ""}
    assert_same(ref(empty), pipe(empty))
    assert_same(ref([empty, empty], top_k=None), pipe([empty, empty], top_k=None))
    assert_same(ref(empty, top_k=2), pipe(empty, top_k=2))
    # the same scores as the text alone (transformers' tokenizer drops the empty pair)
    assert pipe(empty) == pipe(text)[0]
    # a None text_pair is no pair too; an empty text with a pair is still a pair
    assert pipe({"text": text, "text_pair": None}) == pipe(text)[0]
    pair_only = {"text": "", "text_pair": text}
    assert_same(ref(pair_only), pipe(pair_only))
