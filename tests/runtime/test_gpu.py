"""The GPU path: provider selection and its errors, the fp16 precision's plan, IO binding (on the CPU
provider here), and, marked ``gpu`` (run with ``-m gpu`` on a machine with onnxruntime-gpu and a CUDA
GPU: benchmarks/gpu_check.sh), fp16 parity on CUDA for BERT, RoBERTa, DistilBERT, XLM-R and DeBERTa-v2
(attention left unfused)."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

import bertrt
from bertrt import backends, session
from bertrt.bundle import FP16_FILE, FP32_FILE
from bertrt.errors import BackendError, InputError, ModelFileNotFoundError

NER = "token-classification"


def _cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


# -- plan: which precision and file an accelerator gets ----------------------------------------------------


def test_cuda_plan_picks_fp16_when_the_bundle_has_it(tiny_fp16_bundle):
    root = tiny_fp16_bundle("bert", NER)
    the_plan = backends.plan(root, providers="cuda")
    assert (the_plan.backend, the_plan.precision, the_plan.providers) == ("onnxruntime", "fp16", ("cuda",))
    assert the_plan.load_bundle(root).model_path.name == FP16_FILE
    explicit = backends.plan(root, "onnxruntime", "fp32", providers=["CUDAExecutionProvider"])
    assert explicit.precision == "fp32" and explicit.load_bundle(root).model_path.name == FP32_FILE


def test_cuda_plan_falls_back_to_fp32_without_an_fp16_graph(tiny_bundle, tmp_path):
    root = tiny_bundle("bert", NER)
    assert backends.plan(root, providers="cuda").precision == "fp32"
    assert backends.plan(root, providers="cpu").precision == "int8"  # the CPU provider: as before
    with pytest.raises(ModelFileNotFoundError, match="bertrt export --fp16"):
        backends.plan(root, precision="fp16", providers="cuda").load_bundle(root)


def test_cuda_plan_ignores_cpu_tuning(tiny_fp16_bundle, tmp_path):
    import json

    root = tmp_path / "b"
    shutil.copytree(tiny_fp16_bundle("bert", NER), root)
    choice = {"backend": "onnxruntime", "precision": "int8", "threads": 1, "batch_size": 4}
    machines = {backends.cpu_key(): {"winner": choice, "by_precision": {"int8": choice}}}
    (root / backends.TUNING_FILE).write_text(json.dumps({"machines": machines}), encoding="utf-8")
    assert backends.plan(root).source == "tuned"
    assert backends.plan(root, providers="cuda").precision == "fp16"


@pytest.mark.parametrize("providers", [None, "cpu", ["CPUExecutionProvider"]])
def test_fp16_without_an_accelerator_is_refused(tiny_fp16_bundle, providers):
    root = tiny_fp16_bundle("bert", NER)
    with pytest.raises(BackendError, match="fp16.*providers='cuda'"):
        backends.plan(root, "onnxruntime", "fp16", providers=providers)
    with pytest.raises(BackendError, match="fp16"):
        backends.check_available("onnxruntime", "fp16")


def test_openvino_has_no_fp16():
    with pytest.raises(BackendError, match="does not run precision 'fp16'.*onnxruntime"):
        backends.check_available("openvino", "fp16", providers="cuda")


def test_accelerated():
    assert not backends.accelerated(None)
    assert not backends.accelerated(["cpu", "CPUExecutionProvider"])
    assert backends.accelerated("cuda") and backends.accelerated(["CUDAExecutionProvider", "cpu"])


# -- errors when CUDA is missing ---------------------------------------------------------------------------


@pytest.mark.skipif(_cuda(), reason="this onnxruntime has CUDA")
@pytest.mark.parametrize("how", [{"providers": "cuda"}, {"device": 0}, {"device": "cuda:0"}])
def test_missing_cuda_names_the_providers_present(tiny_fp16_bundle, how):
    import onnxruntime as ort

    with pytest.raises(InputError, match="CUDAExecutionProvider not available") as info:
        bertrt.pipeline(NER, tiny_fp16_bundle("bert", NER), **how)
    message = str(info.value)
    assert all(p in message for p in ort.get_available_providers())
    assert "onnxruntime-gpu" in message


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        ({"onnxruntime": "1.2", "onnxruntime-gpu": None}, "in place of onnxruntime"),
        ({"onnxruntime": "1.2", "onnxruntime-gpu": "1.2"}, "both onnxruntime and onnxruntime-gpu"),
        ({"onnxruntime": None, "onnxruntime-gpu": "1.2"}, "check the CUDA install"),
    ],
)
def test_missing_cuda_hint_follows_the_installed_packages(monkeypatch, versions, expected):
    from bertrt import cpu

    monkeypatch.setattr(cpu, "installed_versions", lambda names: {n: versions.get(n) for n in names})
    monkeypatch.setattr("onnxruntime.get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(InputError, match=expected):
        session.resolve_providers("cuda")


def test_a_provider_onnxruntime_drops_at_load_is_an_error(tiny_fp16_bundle, monkeypatch):
    """onnxruntime-gpu without the CUDA libraries logs a warning and runs on the CPU: bertrt refuses."""
    import onnxruntime as ort

    real = ort.InferenceSession

    def cpu_only(path, sess_options=None, providers=None, **kwargs):
        return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"], **kwargs)

    monkeypatch.setattr(
        session, "resolve_providers", lambda p: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(ort, "InferenceSession", cpu_only)
    root = tiny_fp16_bundle("bert", NER)
    with pytest.raises(BackendError, match="could not start CUDAExecutionProvider.*CPUExecutionProvider"):
        session.OnnxSession(root / FP16_FILE, 1, "cuda", "logits")


# -- IO binding, on the CPU provider ------------------------------------------------------------------------


def _batch(rng, rows=4, width=13):
    mask = np.ones((rows, width), np.int64)
    for row in range(1, rows):
        mask[row, width - 2 * row :] = 0
    return {
        "input_ids": rng.integers(5, 90, (rows, width)) * mask,
        "attention_mask": mask,
        "token_type_ids": np.zeros((rows, width), np.int64),
    }


@pytest.mark.parametrize("model", [FP32_FILE, "model.int8.onnx"])
def test_io_binding_gives_the_plain_run_result(tiny_bundle, model):
    root = tiny_bundle("bert", NER)
    plain = session.OnnxSession(root / model, 1, None, "logits")
    bound = session.OnnxSession(root / model, 1, None, "logits", io_binding=True)
    assert (plain.device, bound.device) == (None, "cpu")
    batch = _batch(np.random.default_rng(1))
    np.testing.assert_array_equal(plain.run(batch), bound.run(batch))


def test_io_binding_is_safe_from_several_threads(tiny_bundle):
    root = tiny_bundle("bert", NER)
    bound = session.OnnxSession(root / FP32_FILE, 1, None, "logits", io_binding=True)
    batches = [_batch(np.random.default_rng(seed), rows=1 + seed % 3) for seed in range(8)]
    expected = [bound.run(b) for b in batches]
    results = [None] * len(batches)

    def work(i):
        results[i] = bound.run(batches[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def test_binding_device():
    assert session.binding_device(["CUDAExecutionProvider", "CPUExecutionProvider"]) == "cuda"
    assert session.binding_device(["CPUExecutionProvider"]) == "cpu"


def test_a_pipeline_runs_through_io_binding(tiny_bundle, monkeypatch):
    """The pipeline's batches (sorted by length, padded) go through the bound path unchanged."""
    root = tiny_bundle("bert", NER)
    texts = ["Maria loves Groningen", "ok", "The quick brown fox jumps over the lazy dog in Paris."]
    expected = bertrt.pipeline(NER, root, precision="fp32", threads=1)(texts, batch_size=2)
    monkeypatch.setattr(session, "binding_device", lambda providers: "cpu-bound")
    calls = []
    original = session.OnnxSession._run_bound

    def spy(self, feed):
        calls.append({k: v.shape for k, v in feed.items()})
        self.device = "cpu"
        return original(self, feed)

    monkeypatch.setattr(session.OnnxSession, "_run_bound", spy)
    pipe = bertrt.pipeline(NER, root, precision="fp32", threads=1)
    assert pipe.session.device == "cpu-bound"
    assert pipe(texts, batch_size=2) == expected
    assert len(calls) == 2


def test_cli_takes_providers():
    import argparse

    parser = argparse.ArgumentParser()
    backends.add_backend_arguments(parser)
    args = parser.parse_args(["--providers", "cuda,cpu", "--precision", "fp16"])
    assert args.providers == ["cuda", "cpu"] and args.precision == "fp16"
    assert parser.parse_args([]).providers is None


# -- on a CUDA GPU (pytest -m gpu) ---------------------------------------------------------------------------

GPU_ARCHS = ("bert", "roberta", "distilbert", "xlm-roberta", "deberta-v2")
needs_cuda = pytest.mark.skipif(not _cuda(), reason="needs onnxruntime-gpu with a CUDA GPU")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("task", [NER, "feature-extraction"])
@pytest.mark.parametrize("arch", GPU_ARCHS)
def test_cuda_fp16_parity_with_pytorch(arch, task, tiny_fp16_bundle, tiny_checkpoint):
    """The fp16 graph on CUDA against PyTorch fp32 (the export's own gates), and the pipeline on CUDA
    (IO binding) against the CPU fp32 pipeline."""
    import json

    from bertrt.architectures import get_architecture
    from bertrt.export import fp16
    from bertrt.export.convert import load_model
    from bertrt.export.tokenizer import load_tokenizer

    root = tiny_fp16_bundle(arch, task)
    manifest = json.loads((root / "bundle.json").read_text(encoding="utf-8"))
    assert manifest["fp16"]["validation"]["provider"] == "CUDAExecutionProvider"
    checkpoint = tiny_checkpoint(arch, task)
    row = get_architecture(arch)
    model = load_model(checkpoint, task, row.attn_implementation)
    record = fp16.validate_fp16(
        model, load_tokenizer(checkpoint), task, root / FP16_FILE, 128, provider="CUDAExecutionProvider"
    )
    assert all(record["figures"][k] >= v for k, v in record["gates"].items()), record

    gpu = bertrt.pipeline(task, root, device=0)
    assert (gpu.precision, gpu.session.device) == ("fp16", "cuda")
    cpu = bertrt.pipeline(task, root, precision="fp32", threads=1)
    texts = ["Maria Schmidt moved from Hamburg to Groningen.", "ok", "Apple and Google reported earnings."]
    if task == "feature-extraction":
        a = np.stack([np.asarray(v) for v in gpu(texts, pooling="mean")])
        b = np.stack([np.asarray(v) for v in cpu(texts, pooling="mean")])
        cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        assert cos.min() >= 0.995
    else:

        def spans(results):
            return [[{k: v for k, v in e.items() if k != "score"} for e in r] for r in results]

        same = [g == c for g, c in zip(spans(gpu(texts)), spans(cpu(texts)))]
        assert sum(same) >= len(texts) - 1  # a near-tie score may flip one entity of a random model


@pytest.mark.gpu
@needs_cuda
def test_cuda_batches_are_length_sorted_and_invariant(tiny_fp16_bundle):
    root = tiny_fp16_bundle("bert", "feature-extraction")
    pipe = bertrt.pipeline("feature-extraction", root, providers="cuda")
    texts = ["a much longer sentence than the others, with many words in it", "short", "mid length one"]
    one = np.stack([np.asarray(pipe(t, pooling="mean")) for t in texts])
    many = np.stack([np.asarray(v) for v in pipe(texts, pooling="mean", batch_size=3)])
    np.testing.assert_allclose(one, many, atol=5e-3)


# -- tune and bench with a GPU plan (CUDA stood in for by the CPU provider) ---------------------------------


def test_tune_for_cuda_writes_the_accelerator_entry_that_the_cuda_plan_reads(tiny_fp16_bundle, tmp_path):
    from bertrt import tune

    root = tmp_path / "b"
    shutil.copytree(tiny_fp16_bundle("bert", NER), root)
    seen = []

    def factory(task, bundle, backend, precision, threads, providers=None):
        seen.append((backend, precision, tuple(providers)))
        # the CPU provider stands in for CUDA: an explicit plan skips the accelerator check
        stand_in = backends.Plan(backend, precision, threads, "explicit", providers=("cpu",))
        return bertrt.pipeline(task, bundle, plan=stand_in)

    entry = tune.tune(
        root,
        texts=["Maria lives in Paris", "ok"],
        batch_sizes=(2,),
        repeats=1,
        factory=factory,
        providers=["cuda"],
    )
    assert entry["key"] == backends.tuning_key("cuda") and entry["key"].startswith("cuda on ")
    assert entry["providers"] == ["cuda"]
    assert {p for _, p, _ in seen} == {"int8", "fp32", "fp16"} and {b for b, _, _ in seen} == {"onnxruntime"}
    assert "providers cuda" in tune.format_report(entry)
    tuned = backends.plan(root, providers="cuda")
    assert tuned.source == "tuned" and tuned.providers == ("cuda",)
    assert tuned.precision == entry["winner"]["precision"]
    assert backends.plan(root).source == "static"  # the CPU has no entry of its own


def test_bench_candidates_follow_the_providers():
    from bertrt.bench import systems

    cpu_rows = {(c.backend, c.precision): c.reason for c in systems.candidates()}
    assert "for a GPU" in cpu_rows[("onnxruntime", "fp16")]
    gpu_rows = {(c.backend, c.precision): c.reason for c in systems.candidates(["cuda"])}
    assert {b for b, _ in gpu_rows} == {"onnxruntime"}
    assert gpu_rows[("onnxruntime", "fp16")] is None


@pytest.mark.skipif(_cuda(), reason="this machine has CUDA")
def test_bench_has_no_pytorch_cuda_rows_without_cuda():
    from bertrt.bench import systems

    pytest.importorskip("torch")
    assert systems.build_cuda_references("token-classification", "unused", ["a"], 1) == []
