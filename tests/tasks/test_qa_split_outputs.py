"""question-answering graphs with separate ``start_logits`` / ``end_logits`` outputs, as Optimum and
``torch.onnx`` export ``*ForQuestionAnswering`` models (bertrt's exporter stacks them into ``span_logits``):
such a folder (graph, config.json, tokenizer) loads and answers as transformers' QuestionAnsweringPipeline,
on every architecture row (Optimum's exporter; torch.onnx for the rows it does not export for question
answering: modernbert) and on both backends (torch.onnx, bert)."""

from __future__ import annotations

import shutil

import pytest

import bertrt
from tests.builders import ARCHS
from tests.fixtures_runtime import _export_with_optimum
from tests.tasks.test_zq_parity import CONTEXT, QUESTIONS, _reference, _same_answers
from tests.tasks.zq_models import zq_checkpoint

torch = pytest.importorskip("torch")
pytest.importorskip("optimum")

TASK = "question-answering"
CASES = [{}, {"top_k": 3}, {"top_k": 2, "max_seq_len": 32, "doc_stride": 8, "handle_impossible_answer": True}]


def _torch_onnx_folder(checkpoint, out):
    """The checkpoint's QA model through ``torch.onnx.export`` (TorchScript), with its config and tokenizer."""
    import transformers

    model = transformers.AutoModelForQuestionAnswering.from_pretrained(checkpoint).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    encoded = tokenizer(
        ["Who?", "Where is it?"], ["Maria.", "In Groningen, I think."], padding=True, return_tensors="pt"
    )
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in encoded]
    outputs = ["start_logits", "end_logits"]
    out.mkdir(parents=True)
    torch.onnx.export(
        model,
        (),
        str(out / "model.onnx"),
        kwargs={n: encoded[n] for n in names},
        input_names=names,
        output_names=outputs,
        dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names + outputs},
        opset_version=17,
        dynamo=False,
    )
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _check(pipe, ref):
    for options in CASES:
        for question in QUESTIONS:
            _same_answers(
                pipe(question=question, context=CONTEXT, **options),
                ref(question=question, context=CONTEXT, **options),
            )


def _split_folder(checkpoint, out):
    """Optimum's export, or torch.onnx's for an architecture Optimum does not export for QA."""
    try:
        return _export_with_optimum(checkpoint, out, TASK)
    except ValueError as exc:
        if "only supports the tasks" not in str(exc):
            raise
    shutil.rmtree(out, ignore_errors=True)
    return _torch_onnx_folder(checkpoint, out)


@pytest.mark.parametrize("arch", ARCHS)
def test_an_optimum_qa_folder_answers_as_transformers(arch, model_cache):
    checkpoint = zq_checkpoint(model_cache, arch, TASK)
    folder = model_cache.get(f"split-qa-{arch}", lambda out: _split_folder(checkpoint, out))
    pipe = bertrt.pipeline(bundle=folder, precision="fp32")
    assert pipe.task == TASK and {"start_logits", "end_logits"} <= set(pipe.session.output_names)
    assert "span_logits" not in pipe.session.output_names
    _check(pipe, _reference(TASK, checkpoint))


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_torch_onnx_qa_folder_answers_as_transformers(backend, model_cache, tmp_path):
    if backend == "openvino":
        pytest.importorskip("openvino")
    checkpoint = zq_checkpoint(model_cache, "bert", TASK)
    folder = model_cache.get("torch-onnx-qa-bert", lambda out: _torch_onnx_folder(checkpoint, out))
    pipe = bertrt.pipeline(TASK, shutil.copytree(folder, tmp_path / "qa"), precision="fp32", backend=backend)
    assert pipe.session.stacked == ("start_logits", "end_logits")
    _check(pipe, _reference(TASK, checkpoint))
    items = [{"question": q, "context": CONTEXT} for q in QUESTIONS]
    ref = _reference(TASK, checkpoint)
    for got, want in zip(pipe(items, top_k=2, batch_size=2), ref(items, top_k=2)):
        _same_answers(got, want)


def test_another_task_on_a_split_graph_names_what_it_is(model_cache, tmp_path):
    from bertrt.errors import TaskError

    checkpoint = zq_checkpoint(model_cache, "bert", TASK)
    folder = model_cache.get("torch-onnx-qa-bert", lambda out: _torch_onnx_folder(checkpoint, out))
    with pytest.raises(TaskError, match="this bundle is a question-answering model"):
        bertrt.pipeline("token-classification", shutil.copytree(folder, tmp_path / "qa"), precision="fp32")


def test_a_graph_with_one_of_the_two_is_refused(model_cache, tmp_path):
    """A graph with start_logits alone (no end_logits, no span_logits): the head is missing."""
    from bertrt.errors import TaskError

    onnx = pytest.importorskip("onnx")
    checkpoint = zq_checkpoint(model_cache, "bert", TASK)
    folder = shutil.copytree(
        model_cache.get("torch-onnx-qa-bert", lambda out: _torch_onnx_folder(checkpoint, out)),
        tmp_path / "qa",
    )
    graph = onnx.load(str(folder / "model.onnx"))
    kept = [o for o in graph.graph.output if o.name != "end_logits"]
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    onnx.save(graph, str(folder / "model.onnx"))
    with pytest.raises(TaskError, match="span_logits"):
        bertrt.pipeline(TASK, folder, precision="fp32")
