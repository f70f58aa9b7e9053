"""The exporter's sentence-transformers record: read from a checkpoint's module files with plain JSON,
in the shape :class:`bertrt.bundle.SentenceTransformers` reads."""

from __future__ import annotations

import json

from bertrt.bundle import SentenceTransformers
from bertrt.export import sentence_transformers


def _write(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_a_cls_pooled_checkpoint_with_dense_and_prompts(tmp_path):
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    _write(tmp_path / "modules.json", modules)
    _write(
        tmp_path / "1_Pooling" / "config.json",
        {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False},
    )
    _write(
        tmp_path / "2_Dense" / "config.json",
        {
            "in_features": 8,
            "out_features": 4,
            "bias": True,
            "activation_function": "torch.nn.modules.activation.Tanh",
        },
    )
    _write(tmp_path / "sentence_bert_config.json", {"max_seq_length": 256, "do_lower_case": False})
    _write(
        tmp_path / "config_sentence_transformers.json",
        {"prompts": {"query": "q: "}, "default_prompt_name": None},
    )
    record = sentence_transformers.read_settings(tmp_path)
    assert record["pooling"] == "cls" and record["normalize"] is True and record["max_seq_length"] == 256
    assert record["modules"] == ["Transformer", "Pooling", "Dense", "Normalize"]
    st = SentenceTransformers.from_manifest(json.loads(json.dumps(record)), "bundle.json")
    assert st.pooling == ("cls",) and st.dense[0].out_features == 4 and st.prompts == {"query": "q: "}
    assert st.dense[0].activation.endswith("Tanh")


def test_not_a_sentence_transformers_checkpoint(tmp_path):
    assert sentence_transformers.read_settings(tmp_path) is None
    _write(tmp_path / "modules.json", [{"path": "1_Pooling", "type": "Pooling"}])
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text("{broken")
    assert sentence_transformers.read_settings(tmp_path) is None  # unreadable: logged, not recorded
