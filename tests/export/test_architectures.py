"""What individual architecture rows need beyond the shared parity tests (tests/runtime, tests/tasks).

ELECTRA discriminators embed (no MLM head), DeBERTa takes ``token_type_ids`` exactly when its config has
segment types, ModernBERT's own 8,192 positions are the bundle's max length (NER windows only beyond it),
and the residual-Add pre-pass that lets onnxruntime fuse ALBERT's first attention layer.
"""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper

from bertrt.errors import TaskError
from bertrt.export import export_model
from bertrt.export.optimize import swap_residual_inputs

transformers = pytest.importorskip("transformers")

TOL = 1e-4


def _checkpoint_like(source, out, model_class: str, **config_changes):
    """A checkpoint folder with ``source``'s tokenizer and config (changed), random ``model_class`` weights."""
    import torch

    config = transformers.AutoConfig.from_pretrained(source)
    for key, value in config_changes.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(config).eval()
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, out / name)
    return out


def test_electra_discriminator_exports_as_feature_extraction(tiny_checkpoint, tmp_path):
    import bertrt

    folder = _checkpoint_like(
        tiny_checkpoint("electra", "feature-extraction"), tmp_path / "disc", "ElectraForPreTraining"
    )
    with pytest.raises(TaskError, match="does not match the checkpoint's head ElectraForPreTraining"):
        export_model(folder, tmp_path / "as-mlm", task="fill-mask", quantize="none")
    manifest = export_model(folder, tmp_path / "bundle", quantize="none")  # the task is inferred
    assert manifest["task"] == "feature-extraction"
    assert manifest["architecture"] == "ElectraForPreTraining"
    ref = transformers.pipeline("feature-extraction", model=str(folder), device="cpu")
    pipe = bertrt.pipeline(None, tmp_path / "bundle", precision="fp32")
    text = "Élodie García visited Zürich."
    np.testing.assert_allclose(pipe(text), np.asarray(ref(text)), atol=TOL, rtol=0)


def test_deberta_takes_token_type_ids_when_its_config_has_segment_types(tiny_checkpoint, tmp_path):
    import bertrt

    source = tiny_checkpoint("deberta-v2", "text-classification")
    assert json.loads((source / "config.json").read_text())["type_vocab_size"] == 0  # v3: none
    folder = _checkpoint_like(
        source, tmp_path / "typed", "DebertaV2ForSequenceClassification", type_vocab_size=2
    )
    manifest = export_model(folder, tmp_path / "bundle", quantize="none")
    assert manifest["input_names"] == ["input_ids", "attention_mask", "token_type_ids"]
    ref = transformers.pipeline("text-classification", model=str(folder), device="cpu")
    pipe = bertrt.pipeline(None, tmp_path / "bundle", precision="fp32")
    pair = {"text": "Maria loves Groningen.", "text_pair": "She lives in Paris."}
    want, got = ref(pair, top_k=None), pipe(pair, top_k=None)
    assert [r["label"] for r in got] == [r["label"] for r in want]
    assert max(abs(r["score"] - g["score"]) for r, g in zip(want, got)) <= TOL
    # the segment ids really reach the graph: typing the pair as one segment changes the scores
    assert got != pipe("Maria loves Groningen. She lives in Paris.", top_k=None)


def test_modernbert_uses_its_own_long_context(tiny_checkpoint, tmp_path):
    import bertrt

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint("modernbert", "token-classification"), folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["model_max_length"] = 8192  # as the real checkpoint's (the tiny one says 64)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    manifest = export_model(folder, tmp_path / "bundle", quantize="none")
    assert manifest["max_length"] == 8192
    text = "Angela Merkel met Emmanuel Macron in Paris on Monday. " * 12  # ~160 tokens: 1 window
    pipe = bertrt.pipeline("ner", tmp_path / "bundle", precision="fp32")
    assert len(pipe.tokenizer.encode_windows([text], stride=8)[0]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = transformers.pipeline("token-classification", model=str(folder), device="cpu")
        for strategy in ("none", "simple", "first"):
            want = ref(text, aggregation_strategy=strategy, ignore_labels=[])
            got = pipe(text, aggregation_strategy=strategy, ignore_labels=[])
            assert len(got) == len(want) > 20
            for g, w in zip(got, want):
                assert {k: v for k, v in g.items() if k != "score"} == {
                    k: v for k, v in w.items() if k != "score"
                }
                assert abs(g["score"] - float(w["score"])) <= TOL


def _residual_graph(attention_first: bool):
    """Add(embedding projection, attention output projection) -> LayerNormalization, ALBERT's layer 0."""
    nodes = [
        helper.make_node("MatMul", ["x", "w_emb"], ["emb_mm"]),
        helper.make_node("Add", ["emb_mm", "b_emb"], ["emb"]),  # embedding_hidden_mapping_in
        helper.make_node("Reshape", ["ctx", "shape"], ["ctx_2d"]),  # the heads merged back
        helper.make_node("MatMul", ["ctx_2d", "w_out"], ["out_mm"]),
        helper.make_node("Add", ["b_out", "out_mm"], ["attn"]),  # attention/dense
        helper.make_node("Add", ["attn", "emb"] if attention_first else ["emb", "attn"], ["residual"]),
        helper.make_node("LayerNormalization", ["residual", "gamma", "beta"], ["y"]),
    ]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "ctx")]
    return helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    )


def test_residual_pre_pass_puts_the_attention_output_first():
    graph = _residual_graph(attention_first=False)
    assert swap_residual_inputs(graph) == 1
    residual = next(n for n in graph.node if n.output[0] == "residual")
    assert list(residual.input) == ["attn", "emb"]
    assert swap_residual_inputs(graph) == 0  # idempotent
    assert swap_residual_inputs(_residual_graph(attention_first=True)) == 0  # BERT's order: unchanged
