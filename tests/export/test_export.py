"""Export of a tiny random checkpoint of every architecture-table row: bundle, manifest, fusions, figures."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from bertrt.architectures import ARCHITECTURES, takes_token_type_ids
from bertrt.bundle import FP32_FILE, INT8_FILE, MANIFEST, SCHEMA_VERSION
from bertrt.export import quantize as quantize_stage
from tests.builders import ARCHS, CLS_LABELS, HEAD_TASKS, MAX_POS, NER_LABELS

ALL = [(arch, task) for arch in ARCHS for task in HEAD_TASKS]
N_LAYERS = 2  # tests/builders.py builds 2-layer models


def _manifest(folder):
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


def test_public_api_is_pinned():
    import bertrt.export as export

    assert sorted(export.__all__) == ["STEPS", "SUPPORTED_ARCHITECTURES", "export_model"]
    assert export.SUPPORTED_ARCHITECTURES == {
        "bert": "BERT",
        "roberta": "RoBERTa",
        "distilbert": "DistilBERT",
        "xlm-roberta": "XLM-RoBERTa",
        "camembert": "CamemBERT",
        "electra": "ELECTRA",
        "deberta-v2": "DeBERTa-v2/v3",
        "deberta": "DeBERTa",
        "mpnet": "MPNet",
        "modernbert": "ModernBERT",
        "albert": "ALBERT",
    }


@pytest.mark.parametrize("arch,task", ALL)
def test_tiny_bundle_files_and_manifest(tiny_bundle, tiny_checkpoint, arch, task):
    folder = tiny_bundle(arch, task)
    m = _manifest(folder)
    assert m["schema_version"] == SCHEMA_VERSION and m["format"] == "bertrt-bundle"
    assert m["task"] == task and m["model_type"] == arch
    expected_files = {
        FP32_FILE,
        INT8_FILE,
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "config.json",
    }
    assert set(m["files"]) == expected_files
    assert {p.name for p in folder.iterdir()} == expected_files | {MANIFEST}
    for name, rec in m["files"].items():
        data = (folder / name).read_bytes()
        assert rec["bytes"] == len(data)
        assert rec["sha256"] == hashlib.sha256(data).hexdigest()
    # The graph declares token_type_ids where the table says (DeBERTa: where the config has segment types).
    row = ARCHITECTURES[arch]
    config = json.loads((folder / "config.json").read_text())
    takes = takes_token_type_ids(row, config)
    assert takes == (arch in ("bert", "electra", "albert"))  # the tiny DeBERTa-v2 has type_vocab_size 0
    wanted = ["input_ids", "attention_mask"] + (["token_type_ids"] if takes else [])
    assert m["input_names"] == wanted
    for fname in (FP32_FILE, INT8_FILE):
        sess = ort.InferenceSession(str(folder / fname), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == wanted
        assert all(i.shape[:2] == ["batch_size", "sequence_length"] for i in sess.get_inputs())
    assert m["output_names"] == (["last_hidden_state"] if task == "feature-extraction" else ["logits"])
    # RoBERTa-family positions start at padding_idx + 1: the usable length is 2 less
    assert m["max_length"] == MAX_POS - row.position_offset
    labels = {"token-classification": NER_LABELS, "text-classification": CLS_LABELS}.get(task)
    assert m["id2label"] == ({str(i): lab for i, lab in enumerate(labels)} if labels else None)
    # Special tokens name the ids the fast tokenizer uses.
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert m["special_tokens"]["pad"]["id"] == tok.token_to_id(m["special_tokens"]["pad"]["token"])
    assert m["special_tokens"]["mask"]["id"] == tok.token_to_id(m["special_tokens"]["mask"]["token"])
    assert set(m["versions"]) >= {"torch", "transformers", "optimum", "onnxruntime", "onnx", "bertrt"}
    assert all(m["versions"][k] for k in ("torch", "transformers", "optimum", "onnxruntime", "onnx"))
    assert m["created"].endswith("+00:00")
    assert m["source"] == {"kind": "local", "path": str(tiny_checkpoint(arch, task).resolve())}
    assert isinstance(m["opset"], int) and m["opset"] >= 14


@pytest.mark.parametrize("arch,task", ALL)
def test_tiny_bundle_fusions(tiny_bundle, arch, task):
    row = ARCHITECTURES[arch]
    m = _manifest(tiny_bundle(arch, task))
    fusion = m["fusion"]
    # Every layer's attention fuses where a fusion covers it (ALBERT's first layer too, after the pre-pass);
    # MPNet's (relative-position bias) by bertrt's own rewrite onto MultiHeadAttention (export/mpnet.py);
    # ModernBERT's (RoPE) onto RotaryEmbedding + MultiHeadAttention (export/modernbert.py); none for DeBERTa,
    # and that is recorded without a warning.
    fused = N_LAYERS if row.attention_fusion else 0
    assert fusion["counts"]["Attention"] == fused
    bias_fused = N_LAYERS if row.attention_bias_fusion else 0
    rotary = N_LAYERS if row.rotary_attention else 0
    assert fusion["attention_bias_fused"] == bias_fused
    assert fusion["rotary_attention_fused"] == rotary
    assert fusion["counts"]["MultiHeadAttention"] == bias_fused + rotary
    assert fusion["attention_fused"] == fused + bias_fused + rotary
    assert fusion["attention_expected"] == N_LAYERS
    assert fusion["warning"] is None
    # DeBERTa v1 casts around its residual Add: its layer norms fuse, but not into SkipLayerNormalization.
    skip = 0 if arch == "deberta" else 2 * N_LAYERS + (1 if arch == "mpnet" else 0)  # MPNet: embeddings too
    assert fusion["counts"]["SkipLayerNormalization"] == skip
    gelu = fusion["counts"]["BiasGelu"] + fusion["counts"]["FastGelu"] + fusion["counts"]["Gelu"]
    assert gelu >= N_LAYERS
    # RoBERTa-style cumsum position ids keep the embeddings unfused; BERT-style ones fuse.
    assert fusion["counts"]["EmbedLayerNormalization"] == (1 if row.embed_fusion else 0)
    assert fusion["optimizer"].endswith("reordered") == (arch == "albert")  # the pre-pass acts on ALBERT only
    graph_ops = {n.op_type for n in onnx.load(str(tiny_bundle(arch, task) / FP32_FILE)).graph.node}
    assert ("Attention" in graph_ops) == row.attention_fusion
    # the optimizer's SkipLayerNormalization nodes are split into Add + LayerNormalization (faster kernels)
    assert fusion["skip_layernorm"] == {"mode": "split", "split": skip}
    assert "LayerNormalization" in graph_ops and "SkipLayerNormalization" not in graph_ops


@pytest.mark.parametrize("arch,task", ALL)
def test_tiny_bundle_validation_and_quantization(tiny_bundle, arch, task):
    folder = tiny_bundle(arch, task)
    m = _manifest(folder)
    v = m["validation"]
    assert v["fp32_atol"] == (ARCHITECTURES[arch].fp32_tolerance or 1e-4) == 1e-4
    assert v["reference"].endswith(f"{ARCHITECTURES[arch].attn_implementation} attention")
    assert 0 <= v["fp32"]["max_abs_diff"] <= 1e-4
    assert v["int8"]["max_abs_diff"] > v["fp32"]["max_abs_diff"]  # int8 is lossy, and measured as such
    assert "padded batch" in v["batches"] and v["batches"]["padded batch"][0] > 1
    expected = {
        "feature-extraction": {"cosine_min", "cosine_mean"},
        "text-classification": {"label_agreement"},
        "token-classification": {"token_agreement"},
        "fill-mask": {"top5_overlap", "top1_agreement"},
    }[task]
    assert expected <= set(v["int8"])
    assert expected <= set(v["fp32"])
    for key in expected:
        assert v["fp32"][key] == pytest.approx(1.0, abs=1e-6)
        assert 0.6 <= v["int8"][key] <= 1.0 + 1e-9
    q = m["quantization"]
    assert q["weight_type"] == "QInt8" and q["per_channel"] is True
    # every row's graph gets symbolic shape inference (DeBERTa v1's TorchScript If subgraphs, which it
    # could not read, are dropped by the exporter: bertrt.export.deberta.drop_equal_length_branches)
    assert q["shape_inference"].startswith("symbolic")  # contrib-op shape inference succeeded
    assert q["vnni"] == quantize_stage.has_vnni(quantize_stage.cpu_flags())
    assert q["reduce_range"] == (not q["vnni"])
    # The weights shrink. (The files may not: in a tiny DeBERTa or ModernBERT the graph's own nodes
    # outweigh the weights, and the int8 graph has more of them.)
    fp32, int8 = (
        sum(onnx.numpy_helper.to_array(i).nbytes for i in onnx.load(str(folder / f)).graph.initializer)
        for f in (FP32_FILE, INT8_FILE)
    )
    assert int8 < fp32
    ops = {n.op_type for n in onnx.load(str(folder / INT8_FILE)).graph.node}
    assert ops & {"MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QAttention"}


def test_quantize_none_writes_no_int8(tiny_bundle):
    folder = tiny_bundle("distilbert", "feature-extraction", quantize="none")
    m = _manifest(folder)
    assert not (folder / INT8_FILE).exists() and INT8_FILE not in m["files"]
    assert m["quantization"] is None and "int8" not in m["validation"]


def test_head_checkpoint_exports_for_embeddings(tiny_checkpoint, tmp_path):
    from bertrt.export import export_model

    m = export_model(
        tiny_checkpoint("bert", "token-classification"),
        tmp_path / "b",
        task="feature-extraction",
        quantize="none",
    )
    assert m["task"] == "feature-extraction" and m["output_names"] == ["last_hidden_state"]
    assert m["architecture"] == "BertForTokenClassification" and m["id2label"] is None


def test_tokenizer_settings_travel(tiny_bundle, tiny_checkpoint):
    folder = tiny_bundle("distilbert", "token-classification")
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    assert cfg["model_max_length"] == 64
    assert "clean_up_tokenization_spaces" in cfg
    # The bundle's tokenizer.json encodes exactly like the checkpoint's.
    a = Tokenizer.from_file(str(folder / "tokenizer.json")).encode("Élodie loves Groningen!")
    b = Tokenizer.from_file(str(tiny_checkpoint("distilbert", "token-classification") / "tokenizer.json"))
    assert a.ids == b.encode("Élodie loves Groningen!").ids


def test_slow_only_checkpoint_gets_a_fast_tokenizer(tiny_checkpoint, tmp_path):
    import shutil

    from bertrt.export import export_model

    src = tmp_path / "slow"
    shutil.copytree(tiny_checkpoint("bert", "feature-extraction"), src)
    vocab = json.loads((src / "tokenizer.json").read_text())["model"]["vocab"]
    (src / "vocab.txt").write_text("".join(t + "\n" for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])))
    (src / "tokenizer.json").unlink()
    m = export_model(src, tmp_path / "b", quantize="none")
    tok = Tokenizer.from_file(str(tmp_path / "b" / "tokenizer.json"))
    assert tok.encode("Maria loves Groningen.").ids[0] == m["special_tokens"]["cls"]["id"]


# ---- pure helpers -------------------------------------------------------------------------------------


def test_cpu_flags_and_vnni():
    text = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n\nprocessor\t: 1\nflags : x\n"
    flags = quantize_stage.cpu_flags(text)
    assert "avx512_vnni" in flags and quantize_stage.has_vnni(flags)
    assert quantize_stage.has_vnni({"avx_vnni"})
    assert not quantize_stage.has_vnni(quantize_stage.cpu_flags("flags : sse2 avx2 avx512f\n"))
    assert quantize_stage.cpu_flags("no flags here") == set()


def test_figures_are_masked_and_exact():
    from bertrt.export import validate

    a = np.zeros((2, 3, 4), np.float32)
    b = a.copy()
    b[1, 2] = 5.0  # a padded position
    mask = np.array([[1, 1, 1], [1, 1, 0]])
    assert validate.masked_max_abs_diff(a, b, mask) == 0.0
    assert validate.masked_max_abs_diff(a, b) == 5.0
    h = np.array([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])
    np.testing.assert_allclose(validate.mean_pool(h, np.array([[1, 1, 0]])), [[2.0, 0.0]])
    np.testing.assert_allclose(
        validate.cosine_rows(np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[2.0, 0.0], [-1.0, -1.0]])),
        [1.0, -1.0],
    )
    x = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    y = np.array([[0.1, 0.9, 0.0], [0.1, 0.8, 0.1]])
    assert validate.argmax_agreement(x, y) == 0.5
    assert validate.topk_overlap(np.arange(10.0)[None], np.arange(10.0)[::-1][None].copy(), k=5) == 0.0
    assert validate.topk_overlap(np.arange(10.0)[None], np.arange(10.0)[None], k=5) == 1.0


def test_summary_table_flags_unfused_attention(tiny_bundle):
    from bertrt.export.cli import summary_table

    m = _manifest(tiny_bundle("bert", "feature-extraction"))
    text = summary_table(m, "out")
    assert "2/2 layers fused" in text and "int8 size" in text and "WARNING" not in text
    m["fusion"].update(attention_fused=1, warning="only 1 of 2 attention layers were fused")
    assert "WARNING: only 1 of 2 attention layers were fused" in summary_table(m, "out")


def test_relative_out_dir_exports_with_full_shape_inference(tiny_checkpoint, tmp_path, monkeypatch, caplog):
    # quant_pre_process runs inside a temporary working directory: a relative bundle path must still work
    # without falling back to untyped tensors.
    import logging

    from bertrt.export import export_model

    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="bertrt.export"):
        manifest = export_model(tiny_checkpoint("bert", "text-classification"), "relative-bundle")
    assert (tmp_path / "relative-bundle" / "model.int8.onnx").is_file()
    assert "failed" not in manifest["quantization"]["shape_inference"]
    assert not [r for r in caplog.records if "shape inference failed" in r.getMessage()]


def test_fusion_expectations_come_from_the_architecture_table(monkeypatch, tmp_path):
    import dataclasses
    from types import SimpleNamespace

    from onnx import TensorProto, helper

    from bertrt.architectures import ARCHITECTURES
    from bertrt.export import optimize

    nodes = [SimpleNamespace(op_type="Attention")]  # 1 of 2 layers fused, no EmbedLayerNormalization
    monkeypatch.setattr(
        optimize, "_fuse", lambda src, dst, ort_type, dims: SimpleNamespace(graph=SimpleNamespace(node=nodes))
    )
    monkeypatch.setattr(optimize, "_prepass", lambda src: (src, 0))
    dims = {"num_heads": 4, "hidden_size": 32, "num_layers": 2}
    src, dst = tmp_path / "raw.onnx", tmp_path / "model.onnx"
    unfused = "only 1 of 2 attention layers were fused; the graph runs unfused attention (slower)"
    assert optimize.optimize_graph(src, dst, "bert", dims)["warning"] == (
        f"{unfused}; the embeddings were not fused into EmbedLayerNormalization (slower)"
    )
    assert (
        optimize.optimize_graph(src, dst, "roberta", dims)["warning"] == unfused
    )  # no embed fusion expected
    relaxed = dataclasses.replace(ARCHITECTURES["bert"], attention_fusion=False, embed_fusion=False)
    monkeypatch.setattr(optimize, "get_architecture", lambda model_type: relaxed)
    record = optimize.optimize_graph(src, dst, "bert", dims)
    assert record["warning"] is None and record["attention_fused"] == 1
    # No optimizer model type: the graph is copied unfused, and that is no warning either.
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), str(src))
    monkeypatch.setattr(
        optimize, "get_architecture", lambda model_type: dataclasses.replace(relaxed, ort_model_type=None)
    )
    record = optimize.optimize_graph(src, dst, "bert", dims)
    assert record["optimizer"].startswith("none") and record["warning"] is None
    assert dst.read_bytes() == src.read_bytes()


def test_supported_architectures_follow_the_table():
    from bertrt.architectures import ARCHITECTURES
    from bertrt.errors import UnsupportedModelError
    from bertrt.export import convert

    assert convert.SUPPORTED_ARCHITECTURES == {mt: row.name for mt, row in ARCHITECTURES.items()}
    assert convert.check_model_type({"model_type": "roberta"}) == "roberta"
    for bad in ({"model_type": "gpt2"}, {}, {"model_type": ["bert"]}):
        with pytest.raises(UnsupportedModelError, match="bertrt exports BERT"):
            convert.check_model_type(bad)


def test_validation_batches_carry_token_type_ids_only_where_the_architecture_takes_them(tiny_checkpoint):
    from transformers import AutoTokenizer

    from bertrt.export import validate

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint("bert", "feature-extraction"))
    pairs = dict(validate.sample_batches(tok, "feature-extraction", 64))["pair batch"]
    assert pairs["token_type_ids"].max() == 1  # the second segment
    without = validate.sample_batches(tok, "feature-extraction", 64, token_type_ids=False)
    assert all("token_type_ids" not in enc for _, enc in without)
