"""``bertrt export MODEL OUT_DIR``: argparse front-end of :func:`bertrt.export.export_model`.

A tqdm bar follows the steps; a summary table (sizes, fusion counts, validation figures) ends the run.
"""

from __future__ import annotations

import argparse
import sys

from bertrt import tasks
from bertrt.bundle import FP16_FILE, FP32_FILE, INT8_FILE, MIN_MAX_LENGTH
from bertrt.errors import TaskError

__all__ = ["add_arguments", "run", "summary_table"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="checkpoint folder, or hf://owner/name[@revision] to download it from the Hugging Face Hub",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="bundle folder to write")
    parser.add_argument(
        "--task",
        type=_task,
        default=None,
        metavar="TASK",
        help=f"task to export for: {', '.join(tasks.TASKS)}, or an alias ({', '.join(tasks.TASK_ALIASES)}) "
        "(default: inferred from config.json architectures)",
    )
    parser.add_argument(
        "--quantize",
        choices=("int8", "none"),
        default="int8",
        help="also write model.int8.onnx (default) or not",
    )
    parser.add_argument(
        "--int8-recipe",
        choices=("per-token", "dynamic"),
        default="per-token",
        help="per-token: per-token activation scales, results independent of the batch (default); "
        "dynamic: onnxruntime quantize_dynamic, one activation scale per batch tensor",
    )
    parser.add_argument(
        "--per-channel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="per-channel int8 weights (default; --no-per-channel for per-tensor); for the "
        "per-token recipe it applies to the embedding tables (its MatMul weights are always "
        "per column)",
    )
    parser.add_argument(
        "--skip-layernorm",
        choices=("split", "fused"),
        default="split",
        help="split (default): each fused SkipLayerNormalization becomes Add + LayerNormalization, which "
        "onnxruntime's CPU kernels run faster (python -m benchmarks.kernels); fused: keep them",
    )
    parser.add_argument(
        "--openvino-ir",
        choices=("none", "fp32", "int8", "both"),
        default="none",
        help="also write the OpenVINO IR of model.onnx (fp32: model.openvino.xml/.bin), of its nncf int8 "
        "weights (int8: model.openvino-int8.xml/.bin) or both, which backend openvino then reads instead "
        "of converting model.onnx at load (default none; needs pip install 'bertrt[openvino]')",
    )
    parser.add_argument(
        "--fp16",
        action="store_true",
        help="also write model.fp16.onnx, the fused graph in fp16 (float32 inputs and outputs kept), which "
        "a CUDA session (--providers cuda, device=0) runs by default; validated against PyTorch (on CUDA "
        "when this onnxruntime has it, else on the CPU provider)",
    )
    parser.add_argument(
        "--opset", type=int, default=None, help="ONNX opset (default: optimum's for the model)"
    )
    parser.add_argument(
        "--max-length",
        type=_max_length,
        default=None,
        help=f"max tokens per sequence, special tokens included, >= {MIN_MAX_LENGTH} and at most the "
        "model's positions (default: the tokenizer's, capped by the positions)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing bundle in OUT_DIR")
    parser.add_argument(
        "--int8-gate",
        action="append",
        default=[],
        metavar="NAME=MIN",
        type=_gate,
        help="override an int8 accuracy gate (cosine_min, token_agreement, top5_overlap); repeatable",
    )
    parser.add_argument(
        "--no-int8-gate",
        action="store_true",
        help="record the int8 agreement figures but do not fail on them",
    )


def _task(text: str) -> str:
    """A task name or alias (``ner``), as ``pipeline()`` and ``bertrt predict`` accept it."""
    try:
        return tasks.normalize_task(text)
    except TaskError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _max_length(text: str) -> int:
    """An int >= MIN_MAX_LENGTH: a bundle with less room than the special tokens and one token fails on
    every call. The upper bound (the model's positions) is checked by export_model before any work."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < MIN_MAX_LENGTH:
        raise argparse.ArgumentTypeError(
            f"expected an int >= {MIN_MAX_LENGTH} (the special tokens and one token), got {text!r}"
        )
    return value


def _gate(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        minimum = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=MIN (e.g. cosine_min=0.97), got {text!r}") from None
    if not 0.0 <= minimum <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: the minimum must be in [0, 1]")
    return name.strip(), minimum


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 else f"{value:.4f}"
    return str(value)


def summary_table(manifest: dict, out_dir: str) -> str:
    """The end-of-run summary as plain text (pure: manifest in, text out)."""
    files = manifest["files"]
    fusion = manifest["fusion"]
    rows = [
        ("bundle", out_dir),
        ("task", manifest["task"]),
        ("model", f"{manifest['model_type']} ({manifest['architecture']})"),
        ("inputs", ", ".join(manifest["input_names"])),
        ("max length", manifest["max_length"]),
        ("fp32 size", _mib(files[FP32_FILE]["bytes"])),
    ]
    if INT8_FILE in files:
        ratio = files[INT8_FILE]["bytes"] / files[FP32_FILE]["bytes"]
        recipe = manifest["quantization"]
        rows.append(("int8 size", f"{_mib(files[INT8_FILE]['bytes'])} ({ratio:.0%} of fp32)"))
        rows.append(
            (
                "int8 recipe",
                (
                    f"{recipe.get('recipe', 'dynamic')}: activations "
                    f"{recipe.get('activation_granularity', recipe['activation_type'])}; weights "
                    f"{recipe.get('weight_granularity', recipe['weight_type'])}, "
                    f"reduce_range={recipe['reduce_range']} (vnni={recipe['vnni']})"
                ),
            )
        )
    fp16 = manifest.get("fp16")
    if fp16 and FP16_FILE in files:
        check = fp16.get("validation") or {}
        figures = ", ".join(f"{k} {_fmt(v)}" for k, v in (check.get("figures") or {}).items())
        where = (check.get("provider") or "?").replace("ExecutionProvider", "")
        rows.append(("fp16 size", _mib(files[FP16_FILE]["bytes"])))
        rows.append(("fp16 vs torch", f"{figures} (on {where})"))
    ir = manifest.get("openvino_ir")
    if ir:
        sizes = ", ".join(
            f"{precision} {_mib(sum(files[name]['bytes'] for name in names))}"
            for precision, names in ir["files"].items()
        )
        checked = ", ".join(
            f"{precision} max|Δ| {_fmt(ir['validation'][precision]['max_abs_diff'])}"
            for precision in ir["files"]
        )
        rows.append(
            (
                "openvino IR",
                f"{sizes} (openvino {ir['produced_by']['openvino']}; vs onnxruntime fp32: {checked})",
            )
        )
    counts = ", ".join(f"{k} {v}" for k, v in fusion["counts"].items() if v)
    split = (fusion.get("skip_layernorm") or {}).get("split")
    if split:
        counts += f" ({split} SkipLayerNormalization split into Add + LayerNormalization)"
    rows.append(("fusions", counts or "none"))
    rows.append(("attention", f"{fusion['attention_fused']}/{fusion['attention_expected']} layers fused"))
    validation = manifest["validation"]
    rows.append(
        (
            "fp32 vs torch",
            ", ".join(f"{k} {_fmt(v)}" for k, v in validation["fp32"].items())
            + f" (tolerance {validation['fp32_atol']:g})",
        )
    )
    if "int8" in validation:
        rows.append(("int8 vs torch", ", ".join(f"{k} {_fmt(v)}" for k, v in validation["int8"].items())))
    width = max(len(k) for k, _ in rows)
    lines = [f"  {k.ljust(width)}  {v}" for k, v in rows]
    if fusion.get("warning"):
        lines.append(f"  WARNING: {fusion['warning']}")
    return "\n".join(lines)


#: flags passed to export_model under their own name
_EXPORT_FLAGS = ("task", "quantize", "per_channel", "int8_recipe", "openvino_ir", "skip_layernorm", "opset")
_EXPORT_FLAGS += ("fp16",)
_EXPORT_FLAGS += ("max_length", "force")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .pipeline import STEPS, export_model
    from .validate import resolve_int8_gates

    with tqdm(total=len(STEPS), desc="export", unit="step", file=sys.stderr, leave=False) as bar:

        def progress(name: str) -> None:
            if bar.n or name != STEPS[0]:
                bar.update(1)
            bar.set_postfix_str(name)

        gates = resolve_int8_gates(dict(args.int8_gate), enabled=not args.no_int8_gate)
        same = {name: getattr(args, name) for name in _EXPORT_FLAGS}
        manifest = export_model(args.model, args.out_dir, progress=progress, int8_gates=gates, **same)
        bar.update(bar.total - bar.n)
    print(summary_table(manifest, args.out_dir))
    return 0
