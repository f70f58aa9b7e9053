"""Every error path of the exporter, asserted on its message, and the ``bertrt export`` command line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import huggingface_hub
import pytest

from bertrt.bundle import INT8_FILE, MANIFEST
from bertrt.cli import main
from bertrt.errors import ExportError, TaskError, UnsupportedModelError, ValidationError
from bertrt.export import convert, export_model, validate


@pytest.fixture(scope="module")
def gpt2_checkpoint(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    out = tmp_path_factory.mktemp("gpt2")
    GPT2LMHeadModel(
        GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=64, n_positions=32)
    ).save_pretrained(out)
    return out


def _copy_with_config(src, dst, **changes):
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_unsupported_architecture_lists_supported(gpt2_checkpoint, tmp_path):
    with pytest.raises(UnsupportedModelError) as info:
        export_model(gpt2_checkpoint, tmp_path / "out")
    msg = str(info.value)
    assert "'gpt2'" in msg and "GPT2LMHeadModel" in msg
    assert "BERT (bert), RoBERTa (roberta), DistilBERT (distilbert)" in msg
    assert not (tmp_path / "out").exists()


def test_task_not_matching_head(tiny_checkpoint, tmp_path):
    with pytest.raises(
        TaskError,
        match=r"'token-classification' does not match the checkpoint's head BertModel; "
        r"it can be exported for: feature-extraction",
    ):
        export_model(
            tiny_checkpoint("bert", "feature-extraction"), tmp_path / "out", task="token-classification"
        )


def test_head_weights_missing_is_a_task_error(tiny_checkpoint, tmp_path):
    # No architectures to check against: the missing classifier weights give the mismatch away.
    src = _copy_with_config(
        tiny_checkpoint("roberta", "feature-extraction"), tmp_path / "ck", architectures=None
    )
    with pytest.raises(
        TaskError, match=r"no weights for the 'text-classification' head \(missing classifier"
    ):
        export_model(src, tmp_path / "out", task="text-classification")


def test_unknown_task_name(tiny_checkpoint, tmp_path):
    with pytest.raises(TaskError, match="unknown task 'summarization'"):
        export_model(tiny_checkpoint("bert", "fill-mask"), tmp_path / "out", task="summarization")


@pytest.mark.parametrize(
    "architectures,needle",
    [
        (None, "config.json has no 'architectures'"),
        (
            ["BertForMultipleChoice"],
            "cannot infer the task from architectures ['BertForMultipleChoice']",
        ),
    ],
)
def test_cannot_infer_task(tiny_checkpoint, tmp_path, architectures, needle):
    src = _copy_with_config(
        tiny_checkpoint("bert", "feature-extraction"), tmp_path / "ck", architectures=architectures
    )
    with pytest.raises(TaskError) as info:
        export_model(src, tmp_path / "out")
    assert needle in str(info.value) and "task" in str(info.value)


def test_existing_bundle_needs_force(tiny_bundle, tiny_checkpoint):
    folder = tiny_bundle("bert", "text-classification")
    before = (folder / MANIFEST).read_bytes()
    with pytest.raises(ExportError, match=r"already holds a bundle; pass --force"):
        export_model(tiny_checkpoint("bert", "text-classification"), folder)
    assert (folder / MANIFEST).read_bytes() == before


def test_force_overwrites_and_drops_stale_files(tiny_checkpoint, tmp_path):
    out = tmp_path / "b"
    export_model(tiny_checkpoint("distilbert", "text-classification"), out)
    assert (out / INT8_FILE).exists()
    (out / "notes.txt").write_text("mine")
    m = export_model(tiny_checkpoint("distilbert", "text-classification"), out, quantize="none", force=True)
    assert not (out / INT8_FILE).exists()  # a stale int8 graph would not match the new manifest
    assert (out / "notes.txt").read_text() == "mine"  # files that are not the bundle's are left alone
    assert json.loads((out / MANIFEST).read_text())["created"] == m["created"]


def test_hub_id_offline_names_id_and_suggests_folder(tmp_path, monkeypatch):
    # issue 14: the hub is opt-in with hf:// (a bare owner/name is a path: see the next-but-one test)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ExportError) as info:
        export_model("hf://bertrt-tests/no-such-model", tmp_path / "out")
    msg = str(info.value)
    assert "'bertrt-tests/no-such-model'" in msg and "local checkpoint folder" in msg


def test_hub_unreachable_fails_fast(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from bertrt.export import convert

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(convert, "_hub_reachable", lambda endpoint, timeout=5.0: False)
    with pytest.raises(ExportError, match=r"'org/model'.*is unreachable.*local checkpoint folder"):
        export_model("hf://org/model", tmp_path / "out")


def test_missing_folder_that_is_no_hub_id(tmp_path, monkeypatch):
    with pytest.raises(ExportError, match="no such folder"):
        export_model(tmp_path / "nope" / "a" / "b", tmp_path / "out")
    # issue 14: an owner/name-shaped string is a path too, never a download
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(ExportError, match=r"^org/model: no such folder \(looked for .*hf://org/model"):
        export_model("org/model", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match=r"not a checkpoint folder \(no config.json\)"):
        export_model(tmp_path / "empty", tmp_path / "out")


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"quantize": "int4"}, "quantize must be one of int8, none, got 'int4'"),
        ({"opset": 7}, "opset must be an int >= 11"),
        ({"max_length": 500}, "max_length 500 exceeds the model's 64 positions"),
    ],
)
def test_bad_options(tiny_checkpoint, tmp_path, kwargs, needle):
    with pytest.raises(ExportError) as info:
        export_model(tiny_checkpoint("bert", "feature-extraction"), tmp_path / "out", **kwargs)
    assert needle in str(info.value)


def test_fp32_validation_failure_carries_numbers(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(validate, "FP32_ATOL", 1e-12)
    with pytest.raises(ValidationError) as info:
        export_model(tiny_checkpoint("bert", "token-classification"), tmp_path / "out", quantize="none")
    err = info.value
    assert "fp32 max|Δ| of logits = " in str(err) and "> 1e-12" in str(err)
    assert err.figures["fp32"]["max_abs_diff"] > 1e-12
    assert not (tmp_path / "out").exists()  # no half-written bundle
    assert not list(tmp_path.glob(".bertrt-export-*"))  # nor a leftover work folder


def test_int8_gate_failure_collects_every_failure(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(validate, "FP32_ATOL", 1e-12)
    monkeypatch.setattr(validate, "INT8_GATES", {"cosine_min": 1.5})
    with pytest.raises(ValidationError) as info:
        export_model(tiny_checkpoint("roberta", "feature-extraction"), tmp_path / "out")
    msg = str(info.value)
    assert "fp32 max|Δ| of last_hidden_state" in msg and "int8 cosine_min = " in msg and "< 1.5" in msg
    assert 0.9 < info.value.figures["int8"]["cosine_min"] <= 1.0


# ---- the command line ---------------------------------------------------------------------------------


def test_cli_export_summary_and_exit_codes(tiny_checkpoint, tmp_path, capsys):
    ckpt = str(tiny_checkpoint("roberta", "token-classification"))
    out = str(tmp_path / "bundle")
    assert main(["export", ckpt, out, "--quantize", "none", "--max-length", "40"]) == 0
    printed = capsys.readouterr().out
    assert "2/2 layers fused" in printed and "token-classification" in printed and "fp32 vs torch" in printed
    m = json.loads((tmp_path / "bundle" / MANIFEST).read_text())
    assert m["task"] == "token-classification" and m["max_length"] == 40 and m["quantization"] is None
    # Again without --force: one line on stderr, exit 1.
    assert main(["export", ckpt, out]) == 1
    err = capsys.readouterr().err
    assert "bertrt export: error:" in err and "--force" in err


def test_cli_errors(gpt2_checkpoint, tiny_checkpoint, tmp_path, capsys):
    assert main(["export", str(gpt2_checkpoint), str(tmp_path / "o")]) == 1
    assert "is not supported; bertrt exports BERT" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["export", str(tiny_checkpoint("bert", "fill-mask")), str(tmp_path / "o"), "--task", "qa"])
    assert info.value.code == 2
    assert "argument --task: unknown task 'qa'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["export", str(tiny_checkpoint("bert", "fill-mask"))])
    assert info.value.code == 2


def test_int8_gate_is_overridable_from_the_cli(tiny_checkpoint, tmp_path, capsys):
    ckpt = str(tiny_checkpoint("bert", "feature-extraction"))
    # An impossible gate fails the int8 step with the figure, the gate and how to override it.
    with pytest.raises(SystemExit) as info:  # a usage error: argparse exits 2
        main(["export", ckpt, str(tmp_path / "a"), "--int8-gate", "cosine_min=1.5"])
    assert info.value.code == 2
    assert "must be in [0, 1]" in capsys.readouterr().err
    # int8 is never bit-exact, so a gate of exactly 1.0 must fire.
    assert main(["export", ckpt, str(tmp_path / "a"), "--int8-gate", "cosine_min=1.0"]) == 1
    err = capsys.readouterr().err
    assert "int8 cosine_min = " in err and "< 1.0" in err and "--no-int8-gate" in err
    assert not (tmp_path / "a" / MANIFEST).exists()
    # Disabled: the export passes and the figures are still recorded, with no gate in force.
    assert main(["export", ckpt, str(tmp_path / "b"), "--int8-gate", "cosine_min=1.0", "--no-int8-gate"]) == 0
    m = json.loads((tmp_path / "b" / MANIFEST).read_text())
    assert m["validation"]["int8_gates"] == {} and "cosine_min" in m["validation"]["int8"]
    assert main(["export", ckpt, str(tmp_path / "c"), "--int8-gate", "nonsense=0.5"]) == 1
    assert "unknown int8 gate 'nonsense'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["export", ckpt, str(tmp_path / "c"), "--int8-gate", "cosine_min"])
    assert info.value.code == 2
    assert "expected NAME=MIN" in capsys.readouterr().err


# ---- issue 14: checked before any work -----------------------------------------------------------------


@pytest.fixture()
def no_work(monkeypatch):
    """Fail the test if the export gets as far as loading the PyTorch model."""
    monkeypatch.setattr(convert, "load_model", lambda *a, **k: pytest.fail("the export started its work"))


def test_task_alias_is_accepted(tiny_checkpoint, tmp_path, capsys):
    ckpt = str(tiny_checkpoint("bert", "token-classification"))
    m = export_model(ckpt, tmp_path / "a", task="ner", quantize="none")
    assert m["task"] == "token-classification"
    assert main(["export", ckpt, str(tmp_path / "b"), "--task", "ner", "--quantize", "none"]) == 0
    assert json.loads((tmp_path / "b" / MANIFEST).read_text())["task"] == "token-classification"
    capsys.readouterr()


@pytest.mark.parametrize(
    "max_length,needle",
    [
        (2, "max_length must be an int >= 3 (the special tokens and one token), got 2"),
        (0, "max_length must be an int >= 3"),
        (True, "max_length must be an int >= 3"),
        (65, "max_length 65 exceeds the model's 64 positions"),
    ],
)
def test_max_length_out_of_range_fails_before_work(no_work, tiny_checkpoint, tmp_path, max_length, needle):
    with pytest.raises(ExportError) as info:
        export_model(tiny_checkpoint("bert", "token-classification"), tmp_path / "out", max_length=max_length)
    assert needle in str(info.value)
    assert not (tmp_path / "out").exists()


def test_max_length_names_the_position_offset(no_work, tiny_checkpoint, tmp_path):
    with pytest.raises(ExportError, match=r"max_length 63 exceeds the model's 62 positions \(max_position_"):
        export_model(tiny_checkpoint("roberta", "token-classification"), tmp_path / "out", max_length=63)


def test_cli_max_length_below_minimum_is_a_usage_error(no_work, tiny_checkpoint, tmp_path, capsys):
    ckpt = str(tiny_checkpoint("bert", "token-classification"))
    for value in ("2", "-1", "x"):
        with pytest.raises(SystemExit) as info:
            main(["export", ckpt, str(tmp_path / "out"), "--max-length", value])
        assert info.value.code == 2
        assert (
            f"argument --max-length: expected an int >= 3 (the special tokens and one token), got '{value}'"
            in (capsys.readouterr().err)
        )
    assert main(["export", ckpt, str(tmp_path / "out"), "--max-length", "65"]) == 1
    assert "max_length 65 exceeds the model's 64 positions" in capsys.readouterr().err


def _unwritable_folder(tmp_path):
    """A folder this process cannot create files in: chmod 0o555, or for root (who ignores it) /sys."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize("where", ["inside", "is", "below"])
def test_unwritable_out_dir_fails_before_work(no_work, tiny_checkpoint, tmp_path, where, capsys):
    folder = _unwritable_folder(tmp_path)
    try:
        out = {"inside": folder / "bertrt-out", "is": folder, "below": folder / "a" / "b"}[where]
        ckpt = tiny_checkpoint("bert", "token-classification")
        with pytest.raises(ExportError, match="cannot write the bundle, .* is not writable") as info:
            export_model(ckpt, out, force=True)
        assert str(folder) in str(info.value)
        assert main(["export", str(ckpt), str(out), "--force"]) == 1
        assert "is not writable" in capsys.readouterr().err
    finally:
        if folder != Path("/sys"):
            folder.chmod(0o755)


def test_writability_probe_leaves_nothing_behind(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(convert, "load_model", lambda *a, **k: (_ for _ in ()).throw(ExportError("stop")))
    (tmp_path / "out").mkdir()
    with pytest.raises(ExportError, match="stop"):
        export_model(tiny_checkpoint("bert", "token-classification"), tmp_path / "out")
    assert list(tmp_path.iterdir()) == [tmp_path / "out"] and not list((tmp_path / "out").iterdir())


def test_checkpoint_labels_with_a_hole_fail_before_work(no_work, tiny_checkpoint, tmp_path):
    # The loader refuses such a bundle (issue 14), so the exporter refuses to spend the work on it.
    src = tiny_checkpoint("bert", "token-classification")
    labels = json.loads((src / "config.json").read_text())["id2label"]
    holed = {**{k: v for k, v in labels.items() if k != "3"}, "12": labels["3"]}
    ckpt = _copy_with_config(src, tmp_path / "ck", id2label=holed)
    with pytest.raises(
        ExportError, match=r"config\.json id2label must have the ids 0\.\.8 .*missing 3, out of range 12"
    ):
        export_model(ckpt, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_bundle_the_runtime_would_refuse_is_not_installed(tiny_checkpoint, tmp_path, monkeypatch):
    from bertrt.export import manifest

    build = manifest.build_manifest
    monkeypatch.setattr(manifest, "build_manifest", lambda **kw: {**build(**kw), "max_length": 2})
    with pytest.raises(
        ExportError, match=r"the bundle written does not load: .*max_length must be an int >= 3"
    ):
        export_model(tiny_checkpoint("bert", "token-classification"), tmp_path / "out", quantize="none")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".bertrt-export-*"))
