"""``bertrt tune``: tuning.json's schema, the accuracy and batch-invariance gates, and backend="auto"."""

from __future__ import annotations

import json
import shutil

import pytest

import bertrt
from bertrt import backends, cpu, tune
from bertrt.cli import main
from bertrt.errors import BundleError
from bertrt.tasks import get_task
from tests.corpus import TRAIN_TEXT

TEXTS = list(TRAIN_TEXT)[:16]
QUICK = {"texts": TEXTS, "batch_sizes": (4, 32), "repeats": 1}


@pytest.fixture
def ner_folder(runtime_bundle, tmp_path):
    """A private copy of the tiny NER bundle (tune writes into it)."""
    return shutil.copytree(runtime_bundle("bert", "token-classification"), tmp_path / "ner")


def test_tuning_json_schema(ner_folder):
    entry = tune.tune(ner_folder, precisions=["fp32", "int8"], **QUICK)
    data = json.loads((ner_folder / backends.TUNING_FILE).read_text())
    assert data["schema_version"] == 1 and data["format"] == "bertrt-tuning"
    assert list(data["machines"]) == [backends.cpu_key()] == [entry["key"]]
    stored = data["machines"][entry["key"]]
    assert stored["cpu"]["model"] and stored["cpu"]["cores"] >= 1
    assert stored["task"] == "token-classification" and stored["sample"]["texts"] == len(TEXTS)
    assert stored["gates"] == tune.gates_of("token-classification") == dict(get_task("ner").gates)
    pairs = {(c["backend"], c["precision"]) for c in stored["candidates"]}
    assert pairs == {
        ("onnxruntime", "fp32"),
        ("onnxruntime", "int8"),
        ("openvino", "fp32"),
        ("openvino", "int8"),
    }
    for c in stored["candidates"]:
        assert c["available"] and set(c["figures"]) >= {"accuracy.entity_f1", "invariance.agreement"}
        assert [s["batch_size"] for s in c["speeds"]] == [4, 32]
        assert all(s["min"] <= s["texts_per_s"] <= s["max"] for s in c["speeds"])
        assert c["texts_per_s"] == max(s["texts_per_s"] for s in c["speeds"])
    fp32 = next(c for c in stored["candidates"] if c["backend"] == "onnxruntime" and c["precision"] == "fp32")
    assert fp32["figures"]["accuracy.entity_f1"] == 1.0 and fp32["passed"]  # the reference agrees with itself
    passed = [c for c in stored["candidates"] if c["passed"]]
    assert stored["winner"]["texts_per_s"] == max(c["texts_per_s"] for c in passed)
    for precision, choice in stored["by_precision"].items():
        assert choice["precision"] == precision
    report = tune.format_report(stored)
    assert "| onnxruntime | int8 |" in report and "Winner:" in report and stored["cpu"]["model"] in report


def _sabotaged(broken: dict):
    """A factory building real pipelines, with the candidates in ``broken`` wrapped to misbehave."""

    def factory(task, bundle, backend, precision, threads):
        pipe = tune._default_factory(task, bundle, backend, precision, threads)
        how = broken.get((backend, precision))
        if how is None:
            return pipe

        def call(texts, batch_size=32):
            results = pipe(texts, batch_size=batch_size)
            if how == "batch-dependent" and batch_size == 1:
                return [r[:-1] for r in results]  # drops an entity only when run alone
            if how == "inaccurate":
                return [[{**e, "start": e["start"] + 1} for e in r] for r in results]
            return results

        return call

    return factory


def test_gates_reject_injected_candidates(ner_folder):
    factory = _sabotaged({("onnxruntime", "int8"): "batch-dependent", ("openvino", "int8"): "inaccurate"})
    entry = tune.tune(ner_folder, precisions=["fp32", "int8"], factory=factory, write=False, **QUICK)
    by = {(c["backend"], c["precision"]): c for c in entry["candidates"]}
    bad_invariance = by["onnxruntime", "int8"]
    assert not bad_invariance["passed"]
    assert any(r.startswith("invariance.agreement") for r in bad_invariance["reasons"])
    assert bad_invariance["figures"]["accuracy.entity_f1"] >= 0.95  # accurate at batch 32, yet rejected
    bad_accuracy = by["openvino", "int8"]
    assert not bad_accuracy["passed"]
    assert any(r.startswith("accuracy.entity_f1") for r in bad_accuracy["reasons"])
    assert bad_accuracy["figures"]["invariance.agreement"] == 1.0
    assert entry["winner"]["precision"] == "fp32"
    assert "int8" not in entry["by_precision"]
    assert not (ner_folder / backends.TUNING_FILE).exists()  # write=False
    # a stricter gate than any candidate meets: no winner, and the report says so
    strict = tune.tune(ner_folder, backend_names=["onnxruntime"], precisions=["int8"], factory=factory,
                       gates={"accuracy.entity_f1": 1.01}, write=False, **QUICK)  # fmt: skip
    assert strict["winner"] is None and "none passed" in tune.format_report(strict)


def _write_tuning(folder, key, winner, by_precision=None):
    entry = {"key": key, "winner": winner, "by_precision": by_precision or {}}
    (folder / backends.TUNING_FILE).write_text(json.dumps({"schema_version": 1, "machines": {key: entry}}))


def test_auto_uses_tuning_only_on_a_matching_cpu(ner_folder, monkeypatch):
    winner = {"backend": "openvino", "precision": "fp32", "threads": 1, "batch_size": 8, "texts_per_s": 1.0}
    int8 = {"backend": "openvino", "precision": "int8", "threads": 1, "batch_size": 8, "texts_per_s": 0.5}
    _write_tuning(ner_folder, backends.cpu_key(), winner, {"fp32": winner, "int8": int8})
    tuned = bertrt.pipeline("ner", ner_folder)
    assert (tuned.backend, tuned.precision, tuned.session.threads) == ("openvino", "fp32", 1)
    assert tuned.plan.source == "tuned" and tuned.plan.batch_size == 8
    assert bertrt.pipeline("ner", ner_folder, precision="int8").backend == "openvino"  # by_precision
    assert bertrt.pipeline("ner", ner_folder, threads=2).session.threads == 2  # an explicit count wins
    explicit = bertrt.pipeline("ner", ner_folder, backend="onnxruntime")
    assert (explicit.backend, explicit.precision, explicit.plan.source) == ("onnxruntime", "int8", "explicit")
    # another CPU key (another model, flags or core count): the static rule
    monkeypatch.setattr(cpu, "cpu_key", lambda info=None: "Other CPU | avx2 | 2 cores")
    static = bertrt.pipeline("ner", ner_folder)
    assert (static.backend, static.precision, static.plan.source) == ("onnxruntime", "int8", "static")
    assert static.bundle.model_path.name == "model.int8.onnx"


def test_unreadable_tuning_json(ner_folder):
    (ner_folder / backends.TUNING_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="tuning.json"):
        bertrt.pipeline("ner", ner_folder)
    bertrt.pipeline("ner", ner_folder, backend="onnxruntime")  # an explicit backend never reads it


def test_cli(ner_folder, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    args = ["tune", str(ner_folder), "--texts", str(texts), "--backends", "onnxruntime", "--repeats", "1"]
    assert main([*args, "--report", "--no-write"]) == 0
    out = capsys.readouterr().out
    assert "| onnxruntime | fp32 |" in out and "Winner:" in out
    assert not (ner_folder / backends.TUNING_FILE).exists()
    assert main(args) == 0
    assert "written to" in capsys.readouterr().out
    assert (ner_folder / backends.TUNING_FILE).is_file()
    assert main([*args, "--gate", "accuracy.entity_f1"]) == 2
    assert main([*args, "--gate", "nonsense=1"]) == 1
    assert "unknown gate" in capsys.readouterr().err


def test_labelled_data_gates_on_the_gold_score(ner_folder, tmp_path):
    """--labelled: the labelled texts are the sample, each candidate's gold F1 is measured and its loss
    against fp32 gated at 0.5 points; a candidate that loses entities fails on that figure."""
    from bertrt.evaluate import Sentence, write_iob
    from bertrt.evaluate.align import entities_to_iob, token_spans

    reference = bertrt.pipeline(None, ner_folder, precision="fp32", backend="onnxruntime")
    sentences = []
    for text in TEXTS:
        tokens = text.split()
        joined, spans = token_spans(tokens)
        tags = entities_to_iob(reference([joined], aggregation_strategy="first")[0], spans)
        sentences.append(Sentence(tokens, tags))
    assert any(t != "O" for s in sentences for t in s.tags)  # the gold data has entities to lose
    path = write_iob(sentences, tmp_path / "gold.iob")

    def factory(task, bundle, backend, precision, threads):
        pipe = tune._default_factory(task, bundle, backend, precision, threads)
        if precision == "fp32":
            return pipe

        def call(texts, batch_size=32, **kwargs):  # loses the first entity of every text
            return [r[1:] for r in pipe(texts, batch_size=batch_size, **kwargs)]

        return call

    entry = tune.tune(
        ner_folder, backend_names=["onnxruntime"], labelled=path, factory=factory, write=False,
        batch_sizes=(32,), repeats=1,
    )  # fmt: skip
    assert entry["sample"] == {"texts": len(TEXTS), "source": f"the labelled data ({len(TEXTS)} items)"}
    assert entry["labelled"] == {"items": len(TEXTS), "reference_f1": 100.0}  # gold = fp32's own output
    assert entry["gates"]["labelled.f1_delta"] == -0.5
    by = {c["precision"]: c for c in entry["candidates"]}
    assert by["fp32"]["figures"]["labelled.f1"] == 100.0 and by["fp32"]["passed"]
    assert by["int8"]["figures"]["labelled.f1_delta"] < -0.5
    assert any(r.startswith("labelled.f1_delta") for r in by["int8"]["reasons"])
    assert "gold f1_delta" in tune.format_report(
        entry
    ) and "reference gold score f1 100.00" in tune.format_report(entry)
    with pytest.raises(
        bertrt.errors.InputError, match="labelled data is scored for .* this one is fill-mask"
    ):
        tune._load_labelled("fill-mask", path)


def test_nothing_could_run_is_an_error_not_a_result(ner_folder, capsys):
    args = ["tune", str(ner_folder), "--backends", "onnxruntime", "--precisions", "bf16", "--repeats", "1"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "no candidate could run" in err and "onnxruntime bf16" in err
    assert not (ner_folder / backends.TUNING_FILE).exists()


def test_goal_latency_picks_the_lowest_batch1_p50(ner_folder, monkeypatch):
    # the measured p50s are replaced by fixed ones (no test depends on timing): fp32 answers one text fastest
    fixed = {("onnxruntime", "fp32"): 2.0, ("onnxruntime", "int8"): 5.0}

    def factory(task, bundle, backend, precision, threads):
        pipe = tune._default_factory(task, bundle, backend, precision, threads)
        pipe.tune_key = (backend, precision)
        return pipe

    monkeypatch.setattr(tune, "_latency", lambda pipe, texts: {"p50_ms": fixed[pipe.tune_key], "calls": 1})
    common = dict(backend_names=["onnxruntime"], factory=factory, write=False, **QUICK)
    by_latency = tune.tune(ner_folder, goal="latency", **common)
    assert by_latency["goal"] == "latency" and by_latency["winner"]["precision"] == "fp32"
    assert by_latency["winner"] == by_latency["latency_winner"] and by_latency["winner"]["p50_ms"] == 2.0
    tp = by_latency["throughput_winner"]
    assert tp["texts_per_s"] == max(c["texts_per_s"] for c in by_latency["candidates"] if c["passed"])
    assert list(by_latency["by_precision"]) == ["fp32", "int8"]  # ordered by the goal
    report = tune.format_report(by_latency)
    assert (
        "Winner: onnxruntime fp32" in report
        and "(goal latency)" in report
        and "Best by throughput:" in report
    )
    by_default = tune.tune(ner_folder, **common)
    assert by_default["goal"] == "throughput" and by_default["winner"] == by_default["throughput_winner"]
    with pytest.raises(bertrt.errors.InputError, match="goal must be one of throughput, latency"):
        tune.tune(ner_folder, goal="fast", **common)


def test_latency_is_measured_per_candidate(ner_folder, capsys):
    entry = tune.tune(ner_folder, backend_names=["onnxruntime"], precisions=["int8"], write=False, **QUICK)
    (cand,) = entry["candidates"]
    assert cand["latency"]["calls"] == tune.LATENCY_CALLS and cand["p50_ms"] > 0
    assert cand["latency"]["max_ms"] >= cand["p50_ms"]
    assert (
        main(["tune", str(ner_folder), "--backends", "onnxruntime", "--repeats", "1", "--goal", "latency"])
        == 0
    )
    assert "(goal latency)" in capsys.readouterr().out
    stored = json.loads((ner_folder / backends.TUNING_FILE).read_text())["machines"][backends.cpu_key()]
    assert stored["goal"] == "latency" and stored["winner"] == stored["latency_winner"]
