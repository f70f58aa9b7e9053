"""sentence-embedding equals sentence-transformers' ``SentenceTransformer.encode`` (fp32, 1e-4): every
architecture row, every pooling mode, prompts (included and excluded from the pooling), Normalize,
max_seq_length, truncate_dim and normalize_embeddings; the pure-numpy pooling on its own; Dense modules
exported into the graph (cls and mean pooling)."""

from __future__ import annotations

import numpy as np
import pytest

from bertrt import pipeline
from bertrt.errors import InputError
from bertrt.tasks import get_task
from bertrt.tasks.sentence_embedding import pool
from tests.builders import ARCHS
from tests.tasks.st_models import (
    DENSE_VARIANTS,
    VARIANTS,
    build_st_checkpoint,
    build_st_dense_checkpoint,
    st_bundle_from,
)

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Maria works at Acme Corp. in Groningen.",
    "Short one.",
    "A somewhat longer sentence, with punctuation; numbers like 42 and 3.14, and then a question? "
    "It goes on for a while, so that a short max_seq_length cuts it.",
]
ATOL = 1e-4


@pytest.fixture(scope="session")
def st_model(tiny_checkpoint, tiny_bundle, model_cache):
    """``st_model(arch, key) -> (SentenceTransformer, bundle folder)``."""
    from sentence_transformers import SentenceTransformer

    loaded = {}

    def get(arch: str, key: str):
        if (arch, key) not in loaded:
            checkpoint = tiny_checkpoint(arch, "feature-extraction")
            folder = model_cache.get(
                f"st-{arch}-{key}", lambda out: build_st_checkpoint(checkpoint, key, out)
            )
            fe = tiny_bundle(arch, "feature-extraction", "none")
            bundle = model_cache.get(f"st-bundle-{arch}-{key}", lambda out: st_bundle_from(fe, folder, out))
            loaded[arch, key] = (SentenceTransformer(str(folder), device="cpu"), bundle)
        return loaded[arch, key]

    return get


def _check(reference, got) -> None:
    reference = np.asarray(reference, dtype=np.float32)
    assert got.dtype == np.float32 and got.shape == reference.shape
    assert np.abs(got - reference).max() <= ATOL, np.abs(got - reference).max()


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_equals_sentence_transformers(st_model, arch):
    model, bundle = st_model(arch, "mean-norm")
    pipe = pipeline("sentence-embedding", bundle, precision="fp32")
    _check(model.encode(TEXTS), pipe(TEXTS, batch_size=2))
    _check(model.encode(TEXTS[0]), pipe(TEXTS[0]))


@pytest.mark.parametrize("key", [k for k in VARIANTS if k != "mean-norm"])
def test_every_pooling_mode_and_setting(st_model, key):
    model, bundle = st_model("bert", key)
    pipe = pipeline("sentence-embedding", bundle, precision="fp32")
    _check(model.encode(TEXTS), pipe(TEXTS))
    if key.startswith("prompts"):
        name = next(iter(model.prompts))
        _check(model.encode(TEXTS, prompt_name=name), pipe(TEXTS, prompt_name=name))
        _check(model.encode(TEXTS, prompt="search: "), pipe(TEXTS, prompt="search: "))


def test_call_options(st_model):
    model, bundle = st_model("bert", "mean-norm")
    pipe = pipeline("sentence-embedding", bundle, precision="fp32")
    _check(model.encode(TEXTS, truncate_dim=8), pipe(TEXTS, truncate_dim=8))
    _check(
        model.encode(TEXTS, truncate_dim=8, normalize_embeddings=True),
        pipe(TEXTS, truncate_dim=8, normalize_embeddings=True),
    )
    with pytest.raises(InputError, match="prompt_name 'nope' is not one of"):
        pipe(TEXTS, prompt_name="nope")
    with pytest.raises(InputError, match="truncate_dim"):
        pipe(TEXTS, truncate_dim=0)


def test_max_seq_length_cuts_and_is_the_input_length(st_model):
    model, bundle = st_model("bert", "short")
    pipe = pipeline("sentence-embedding", bundle, precision="fp32")
    assert get_task("sentence-embedding").max_input_length(pipe) == 12 < pipe.max_length


def test_a_plain_checkpoint_is_mean_pooled(tiny_bundle, tiny_checkpoint):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_checkpoint("bert", "feature-extraction")), device="cpu")
    pipe = pipeline("sentence-embedding", tiny_bundle("bert", "feature-extraction", "none"), precision="fp32")
    _check(model.encode(TEXTS), pipe(TEXTS))


def test_pool_is_sentence_transformers_pooling_on_a_padded_batch():
    import torch
    from sentence_transformers.sentence_transformer.modules import Pooling

    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(3, 7, 5)).astype(np.float32)
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5], dtype=np.int64)
    for modes in [*Pooling.POOLING_MODES, ("max", "mean", "lasttoken")]:
        ref = Pooling(5, pooling_mode=modes)(
            {"token_embeddings": torch.from_numpy(hidden), "attention_mask": torch.from_numpy(mask)}
        )["sentence_embedding"].numpy()
        np.testing.assert_allclose(
            pool(hidden, mask, (modes,) if isinstance(modes, str) else modes), ref, atol=1e-6
        )


@pytest.mark.parametrize("key", DENSE_VARIANTS)
def test_dense_modules_are_in_the_graph_and_equal_sentence_transformers(tiny_checkpoint, model_cache, key):
    """Pooling -> Dense (-> Normalize): the exported graph's sentence_embedding output at fp32, and int8
    close to it (cosine printed: the figure the report gives)."""
    from sentence_transformers import SentenceTransformer

    from bertrt.export import export_model
    from bertrt.tasks.sentence_embedding import DENSE_OUTPUT

    checkpoint = tiny_checkpoint("bert", "feature-extraction")
    folder = model_cache.get(f"st-bert-{key}", lambda out: build_st_dense_checkpoint(checkpoint, key, out))
    bundle = model_cache.get(f"st-bundle-bert-{key}", lambda out: export_model(folder, out))
    model = SentenceTransformer(str(folder), device="cpu")
    pipe = pipeline(bundle=bundle, precision="fp32")
    assert pipe.task == "sentence-embedding" and DENSE_OUTPUT in pipe.session.output_names
    reference = model.encode(TEXTS)
    assert reference.shape[-1] == DENSE_VARIANTS[key][2][-1][0]
    _check(reference, pipe(TEXTS, batch_size=2))
    _check(model.encode(TEXTS[0]), pipe(TEXTS[0]))
    _check(model.encode(TEXTS, truncate_dim=4), pipe(TEXTS, truncate_dim=4))
    q8 = pipeline(bundle=bundle, precision="int8")(TEXTS)
    fp = pipe(TEXTS)
    cosine = (q8 * fp).sum(-1) / np.linalg.norm(q8, axis=-1) / np.linalg.norm(fp, axis=-1)
    print(f"{key}: int8 cosine to fp32 min {cosine.min():.6f} mean {cosine.mean():.6f}")
    assert cosine.min() > 0.9


@pytest.mark.parametrize("key", DENSE_VARIANTS)
@pytest.mark.parametrize("arch", ARCHS)
def test_dense_modules_equal_sentence_transformers_on_every_architecture(
    tiny_checkpoint, model_cache, arch, key
):
    """The Dense path (pooling and Dense layers appended to the graph) on every architecture row, fp32."""
    from sentence_transformers import SentenceTransformer

    from bertrt.export import export_model

    checkpoint = tiny_checkpoint(arch, "feature-extraction")
    folder = model_cache.get(f"st-{arch}-{key}", lambda out: build_st_dense_checkpoint(checkpoint, key, out))
    bundle = model_cache.get(
        f"st-bundle-{arch}-{key}-fp32", lambda out: export_model(folder, out, quantize="none")
    )
    model = SentenceTransformer(str(folder), device="cpu")
    pipe = pipeline(bundle=bundle, precision="fp32")
    _check(model.encode(TEXTS), pipe(TEXTS, batch_size=2))
    _check(model.encode(TEXTS[0]), pipe(TEXTS[0]))


def test_a_bundle_without_the_dense_output_is_refused(st_model, tmp_path):
    """A bundle recording Dense modules whose graph lacks their output (an older export)."""
    import json
    import shutil

    from bertrt.bundle import MANIFEST
    from bertrt.errors import TaskError

    _, bundle = st_model("bert", "cls")
    shutil.copytree(bundle, tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / MANIFEST).read_text(encoding="utf-8"))
    manifest["sentence_transformers"]["dense"] = [{"in_features": 32, "out_features": 8}]
    (tmp_path / "b" / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(TaskError, match="Dense module"):
        pipeline("sentence-embedding", tmp_path / "b", precision="fp32")


@pytest.mark.parametrize(("mode", "include_prompt"), [("lasttoken", True), ("mean", False)])
def test_dense_after_a_pooling_the_graph_does_not_compute_is_refused(
    tiny_checkpoint, tmp_path, mode, include_prompt
):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer

    from bertrt.errors import ExportError
    from bertrt.export.st_dense import read_dense

    transformer = Transformer(str(tiny_checkpoint("bert", "feature-extraction")))
    dim = transformer.get_embedding_dimension()
    pooling = Pooling(dim, pooling_mode=mode, include_prompt=include_prompt)
    SentenceTransformer(modules=[transformer, pooling, Dense(dim, 8)], device="cpu").save(str(tmp_path))
    with pytest.raises(ExportError, match="before Dense modules is not exported"):
        read_dense(tmp_path)
