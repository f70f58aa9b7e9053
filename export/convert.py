"""Step 1: resolve the checkpoint, check architecture and task, load it in PyTorch, export ONNX with optimum.

The exported graph has dynamic ``batch_size`` and ``sequence_length`` axes on every input and output.
The supported model types are the rows of :mod:`bertrt.architectures` (which take ``token_type_ids``,
the position offset, the attention implementation to trace); every architecture computes its positions
inside the graph (RoBERTa-style ``padding_idx + 1`` offsets, DeBERTa's relative buckets, ModernBERT's
rotary tables), so the runtime never feeds positions. :mod:`bertrt.hub` decides folder or hub
repository (only ``hf://owner/name`` is fetched).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
from pathlib import Path

from bertrt import hub
from bertrt.architectures import ARCHITECTURES, get_architecture, supported_list
from bertrt.errors import ExportError, TaskError, UnsupportedModelError
from bertrt.hub import hub_reachable as _hub_reachable  # the reachability probe (tests replace it)
from bertrt.tasks import ENCODER_TASKS, compatible_tasks, get_task, infer_task, normalize_task

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "check_model_type",
    "export_onnx",
    "load_model",
    "modules_task",
    "read_config",
    "resolve_source",
    "resolve_task",
]

log = logging.getLogger("bertrt.export")

#: model_type -> human name, for messages and the README (from :data:`bertrt.architectures.ARCHITECTURES`).
SUPPORTED_ARCHITECTURES = {model_type: row.name for model_type, row in ARCHITECTURES.items()}

#: PyTorch attention traced into the graph when the architecture row names none. "sdpa" (transformers'
#: default) traces to a pattern onnxruntime's Attention fusion recognizes for BERT, RoBERTa and DistilBERT
#: (DistilBERT's "eager" does not); rows whose model refuses sdpa say "eager"
#: (:attr:`bertrt.architectures.Architecture.attn_implementation`).
ATTENTION_IMPLEMENTATION = "sdpa"

# Files a bundle needs from a hub repository.
_HUB_PATTERNS = ("*.json", "*.safetensors", "*.bin", "*.txt", "*.model", "1_Pooling/*")


def _model_error(what: str, problem: str) -> ExportError:
    return ExportError(f"{what}: {problem}")


def resolve_source(model: str | os.PathLike) -> tuple[Path, dict]:
    """Return ``(local folder, source record)`` for a checkpoint folder or ``hf://owner/name[@revision]``.

    :func:`bertrt.hub.resolve_source` decides which: only an ``hf://`` string is downloaded (with
    ``huggingface_hub``); anything else is a folder, and a missing one is "no such folder". Offline
    (``HF_HUB_OFFLINE``) or when the hub cannot be reached, an :class:`ExportError` names the id and
    suggests passing a local folder.
    """
    source = hub.resolve_source(model, _model_error)
    if source.kind == "hub":
        record = {"kind": "hub", "repo_id": source.repo_id}
        if source.revision:
            record["revision"] = source.revision
        return _download(source.repo_id, source.revision), record
    path = source.path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ExportError(f"{path}: not a checkpoint folder (no config.json)")
        return path.resolve(), {"kind": "local", "path": str(path.resolve())}
    if path.exists():
        raise ExportError(
            f"{path}: is a file; MODEL must be a checkpoint folder or {hub.HUB_PREFIX}owner/name"
        )
    raise ExportError(f"{path}: {hub.missing_folder_problem(source)}")


def _hub_unreachable(repo_id: str, reason: str) -> ExportError:
    return ExportError(
        f"cannot fetch {repo_id!r} from the Hugging Face Hub ({reason}); download it where the hub is "
        f"reachable (e.g. save_pretrained) and pass the local checkpoint folder instead"
    )


def _download(repo_id: str, revision: str | None = None) -> Path:
    path = hub.download(
        repo_id,
        _HUB_PATTERNS,
        lambda reason: _hub_unreachable(repo_id, reason),
        revision=revision,
        reachable=_hub_reachable,
    )
    if not (path / "config.json").is_file():
        raise ExportError(
            f"hub repository {repo_id!r} has no config.json; it is not a transformers checkpoint"
        )
    return path


def read_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{folder / 'config.json'}: cannot read ({exc})") from exc


def check_model_type(config: dict) -> str:
    """Return the config's model_type; :class:`UnsupportedModelError` (listing the supported) otherwise."""
    model_type = config.get("model_type")
    archs = config.get("architectures") or []
    if not isinstance(model_type, str) or get_architecture(model_type) is None:
        what = f"model_type {model_type!r}" + (f" (architecture {', '.join(archs)})" if archs else "")
        raise UnsupportedModelError(f"{what} is not supported; bertrt exports {supported_list()}")
    return model_type


def modules_task(folder: Path) -> str | None:
    """The task a sentence-transformers checkpoint is saved for, when its own files say so: a
    ``SpladePooling`` module (SparseEncoder) -> sparse-embedding, a CrossEncoder -> rerank; else None."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        kinds = [str(m.get("type", "")) for m in modules]
    except (OSError, json.JSONDecodeError, AttributeError, TypeError):
        kinds = []
    if any(kind.endswith("SpladePooling") for kind in kinds):
        return "sparse-embedding"
    try:
        settings = json.loads((folder / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        settings = {}
    if isinstance(settings, dict) and settings.get("model_type") == "CrossEncoder":
        return "rerank"
    return None


def _sentence_transformers_task(folder: Path | None) -> str | None:
    """``sentence-embedding`` for a sentence-transformers checkpoint whose modules.json has a Pooling
    module; None otherwise."""
    own = modules_task(folder) if folder is not None else None
    if own is not None:  # a SparseEncoder or a CrossEncoder
        return own
    path = folder / "modules.json" if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return "sentence-embedding" if "Pooling" in kinds else None


def resolve_task(config: dict, task: str | None, folder: Path | None = None) -> tuple[str, str | None]:
    """Return ``(task, architecture)``: the requested task checked against the head, or the inferred one
    (a sentence-transformers checkpoint in ``folder``: sentence-embedding; else from the architectures)."""
    archs = config.get("architectures") or []
    architecture = archs[0] if archs else None
    if task is None:
        return _sentence_transformers_task(folder) or infer_task(config), architecture
    task = normalize_task(task)
    if architecture is not None:
        allowed = compatible_tasks(architecture) or ENCODER_TASKS
        if task not in allowed:
            raise TaskError(
                f"task {task!r} does not match the checkpoint's head {architecture}; it can be exported for: "
                f"{', '.join(allowed)}"
            )
    return task, architecture


def load_model(folder: Path, task: str, attn_implementation: str | None = ATTENTION_IMPLEMENTATION):
    """Load the PyTorch model with the head for ``task``; :class:`TaskError` when its weights are missing.

    ``attn_implementation`` is the architecture row's (:func:`bertrt.architectures.get_architecture`);
    a model that refuses it is an :class:`ExportError` naming it, not a task mismatch.
    """
    import transformers

    auto = getattr(transformers, get_task(task).auto_class)  # the task module names its head class
    try:
        model, info = auto.from_pretrained(
            folder, attn_implementation=attn_implementation, output_loading_info=True
        )
    except ValueError as exc:  # e.g. a config class the auto class has no head for
        if attn_implementation and "attention implementation" in str(exc):
            raise ExportError(
                f"cannot load {folder} with attn_implementation={attn_implementation!r}: {exc}"
            ) from exc
        raise TaskError(f"cannot load {folder} for task {task!r}: {exc}") from exc
    except OSError as exc:
        raise ExportError(f"cannot load the weights in {folder}: {exc}") from exc
    # Buffers and the pooler (unused by every exported output) are not part of a head.
    missing = [
        k for k in info.get("missing_keys", []) if "position_ids" not in k and not k.startswith("pooler.")
    ]
    if missing:
        raise TaskError(
            f"the checkpoint has no weights for the {task!r} head (missing {', '.join(sorted(missing)[:4])}"
            f"{', ...' if len(missing) > 4 else ''}); choose one of the tasks its head serves"
        )
    head = get_task(task).export_head
    if head:  # the task's own head on the model (bertrt.export.sparse: SPLADE pooling)
        return importlib.import_module(head).wrap(model.eval(), folder).eval()
    return model.eval()


def export_onnx(model, task: str, out_dir: Path, opset: int | None = None) -> Path:
    """Export ``model`` to ``out_dir/model.onnx`` with optimum (dynamic batch and sequence axes)."""
    from optimum.exporters.onnx.convert import onnx_export_from_model

    out_dir.mkdir(parents=True, exist_ok=True)
    finish = getattr(model, "finish_graph", None)  # a wrapper of load_model's: export its inner model
    onnx_task = getattr(model, "onnx_task", None) or get_task(task).export_as or task
    inner = model.inner if finish is not None else model
    try:
        with _optimum_head(inner, onnx_task):
            onnx_export_from_model(inner, out_dir, task=onnx_task, opset=opset, do_validation=False)
    except (ValueError, RuntimeError) as exc:
        raise ExportError(f"optimum's ONNX export failed: {exc}") from exc
    path = out_dir / "model.onnx"
    if not path.is_file():
        raise ExportError(f"optimum's ONNX export wrote no model.onnx in {out_dir}")
    spec = get_task(task)
    if spec.stacked_outputs:
        stack_outputs(path, spec.stacked_outputs, spec.output)
    if finish is not None:
        finish(path)
    return path


@contextlib.contextmanager
def _optimum_head(model, task: str):
    """Let optimum export a head its table lacks for this model type (ModernBERT's question answering):
    for the export only, the model type's own ONNX config class stands for that task too (its outputs
    are the task's common ones, start_logits and end_logits)."""
    import functools

    from optimum.exporters.tasks import TasksManager

    task = TasksManager.map_from_synonym(task)
    table = TasksManager._SUPPORTED_MODEL_TYPE.get(model.config.model_type, {}).get("onnx")
    added = table is not None and task not in table and "feature-extraction" in table
    if added:
        table[task] = functools.partial(table["feature-extraction"].func, task=task)
    try:
        yield
    finally:
        if added:
            table.pop(task, None)


def stack_outputs(path: Path, names: tuple[str, ...], output: str) -> None:
    """Replace the graph outputs ``names`` (each (batch, sequence)) by one output ``output`` (batch,
    sequence, len(names)), their stack on a new last axis (question-answering's start and end logits:
    the runtime reads one output per task)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    graph = model.graph
    declared = {o.name: o for o in graph.output}
    missing = [n for n in names if n not in declared]
    if missing:
        raise ExportError(
            f"the exported graph lacks the output(s) {', '.join(missing)} to stack into {output}"
        )
    axes = helper.make_tensor(f"{output}_axes", TensorProto.INT64, [1], [-1])
    graph.initializer.append(axes)
    for name in names:
        graph.node.append(helper.make_node("Unsqueeze", [name, axes.name], [f"{name}_stacked"]))
    graph.node.append(helper.make_node("Concat", [f"{n}_stacked" for n in names], [output], axis=-1))
    for name in names:
        graph.output.remove(declared[name])
    graph.output.append(
        helper.make_tensor_value_info(
            output, TensorProto.FLOAT, ["batch_size", "sequence_length", len(names)]
        )
    )
    onnx.save(model, str(path))
