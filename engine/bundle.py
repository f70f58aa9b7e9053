"""The bundle format: what ``bertrt export`` writes and the runtime reads, and how a folder is resolved.

A bertrt bundle is a folder::

    model.onnx            optimized fp32 graph
    model.int8.onnx       int8 quantization of model.onnx (recipe in bundle.json "quantization")
    tokenizer.json        fast tokenizer (HF tokenizers)
    tokenizer_config.json tokenizer settings transformers uses (clean_up_tokenization_spaces, ...)
    config.json           the checkpoint's config (id2label, model_type, max_position_embeddings)
    bundle.json           the manifest (below)
    model.openvino.xml    optional (``bertrt export --openvino-ir``): OpenVINO IR of model.onnx, + .bin
    model.openvino-int8.xml  optional: the IR with nncf int8 weights, + .bin (bundle.json "openvino_ir")

bundle.json keys (schema version 1): schema_version, format ("bertrt-bundle"), task, model_type,
architecture, input_names, output_names, max_length, id2label, problem_type, special_tokens,
files {name: {sha256, bytes}}, fusion, quantization, validation, versions, created, source; openvino_ir
when the export wrote IR files.

The OpenVINO backend loads with the file precisions ``openvino-fp32`` (fp32, bf16) and ``openvino-int8``
(:attr:`bertrt.backends.Plan.file_precision`): the IR of that precision when bundle.json records it (its
``.xml`` and ``.bin`` verified like every file), else ``model.onnx`` as for ``fp32``. An IR file the
manifest does not record (stale, or copied in) is not used.

Besides its own bundles the runtime reads two foreign layouts a user may already have, each with
``config.json`` and ``tokenizer.json``:

- an Optimum export folder: ``model.onnx`` (fp32), ``model_quantized.onnx`` (int8);
- a Hugging Face repo folder with an ``onnx/`` subfolder (the transformers.js layout): ``onnx/model.onnx``,
  ``onnx/model_quantized.onnx``, ``onnx/model_int8.onnx``, ``onnx/model_uint8.onnx``, ``onnx/model_q4.onnx``, ...

Loading reads JSON, ONNX and tokenizer.json only: no pickle, no code from the bundle.

What is checked at load (:func:`load_bundle`; every metadata problem is collected and reported in one
BundleError): the files the manifest records (size, sha256), ``id2label`` (a JSON object whose ids are
exactly ``0..n-1``, every label a string; from bundle.json, or config.json without one), ``max_length``
(bundle.json's, or tokenizer_config's ``model_max_length`` when it is the one used) between
:data:`MIN_MAX_LENGTH` and the position table (config ``max_position_embeddings`` minus the
architecture's position offset), ``max_position_embeddings`` itself, ``problem_type``, and the manifest's
``input_names`` / ``output_names``. Once the session exists, :func:`check_graph` compares the manifest's
names with the graph's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import hub
from .architectures import get_architecture
from .errors import BundleError, ModelFileNotFoundError, TaskError
from .tasks import infer_task, normalize_task

__all__ = [
    "FP32_CANDIDATES",
    "FP32_FILE",
    "INT8_CANDIDATES",
    "INT8_FILE",
    "MANIFEST",
    "MIN_MAX_LENGTH",
    "OPENVINO_FILE",
    "OPENVINO_FILE_PRECISIONS",
    "OPENVINO_INT8_FILE",
    "PROBLEM_TYPES",
    "PRECISIONS",
    "SCHEMA_VERSION",
    "Bundle",
    "check_graph",
    "check_id2label",
    "file_sha256",
    "ir_weights_file",
    "load_bundle",
    "select_model_file",
]

log = logging.getLogger("bertrt")

SCHEMA_VERSION = 1
MANIFEST = "bundle.json"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
#: OpenVINO IR of model.onnx (fp32 weights) and of its nncf int8 weights; each with a .bin beside it
OPENVINO_FILE = "model.openvino.xml"
OPENVINO_INT8_FILE = "model.openvino-int8.xml"
#: load_bundle precisions of the OpenVINO backend -> the IR file it reads when the manifest records it
OPENVINO_FILE_PRECISIONS = {"openvino-fp32": OPENVINO_FILE, "openvino-int8": OPENVINO_INT8_FILE}
FORMAT = "bertrt-bundle"

PRECISIONS = ("int8", "fp32")

# Candidate files per precision, in order of preference, as paths relative to the folder. The first one
# present wins. bertrt's own name first, then Optimum's, then the transformers.js onnx/ subfolder.
FP32_CANDIDATES = (FP32_FILE, "onnx/model.onnx")
INT8_CANDIDATES = (
    INT8_FILE,
    "model_quantized.onnx",
    "onnx/model_quantized.onnx",
    "onnx/model_int8.onnx",
    "onnx/model_uint8.onnx",
    "onnx/model_q4.onnx",
    "onnx/model_q4f16.onnx",
    "onnx/model_bnb4.onnx",
)
_CANDIDATES = {"fp32": FP32_CANDIDATES, "int8": INT8_CANDIDATES}

# Files the runtime fetches from a hub repository.
_HUB_PATTERNS = ("*.json", "*.onnx", "onnx/*.onnx", "*.txt", "model.openvino*.xml", "model.openvino*.bin")

# transformers' "no limit" model_max_length is int(1e30); anything this large means "not set".
_UNSET_MAX_LENGTH = 1_000_000

#: The shortest usable max length: the special tokens of one sequence ([CLS] ... [SEP], <s> ... </s>) plus
#: one token of text. A bundle (or an export) with less fails on every call.
MIN_MAX_LENGTH = 3

#: transformers' ``problem_type`` values (None: from the number of labels).
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")

# Graph inputs the runtime can feed (bertrt.session.KNOWN_INPUTS; not imported: it loads numpy).
_RUNTIME_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def ir_weights_file(xml_name: str) -> str:
    """The ``.bin`` weights file OpenVINO reads with the IR ``xml_name`` (same path, ``.bin`` suffix)."""
    return str(Path(xml_name).with_suffix(".bin").as_posix())


def _recorded_ir(root: Path, manifest: dict, precision: str) -> Path | None:
    """The IR file of an OpenVINO file precision when bundle.json records it and it is there, else None."""
    name = OPENVINO_FILE_PRECISIONS[precision]
    recorded = name in (manifest.get("files") or {})
    if recorded and (root / name).is_file():
        return root / name
    if (root / name).is_file():
        log.warning("%s: %s is not recorded in %s (stale?): reading %s", root, name, MANIFEST, FP32_FILE)
    elif recorded:
        log.warning("%s: %s is recorded in %s but missing: reading %s", root, name, MANIFEST, FP32_FILE)
    return None


@dataclass(frozen=True)
class Bundle:
    """A resolved model folder: which files to load and the metadata the runtime needs."""

    root: Path
    layout: str  # "bertrt", "optimum" or "onnx-subfolder"
    model_path: Path
    tokenizer_path: Path
    config: dict
    tokenizer_config: dict
    special_tokens_map: dict
    manifest: dict
    task: str | None  # from bundle.json or inferred from config.json; None when it cannot be inferred
    id2label: dict[int, str] = field(default_factory=dict)
    problem_type: str | None = None

    @property
    def model_type(self) -> str | None:
        return self.manifest.get("model_type") or self.config.get("model_type")

    @property
    def max_length(self) -> int:
        """Longest sequence (special tokens included) the model accepts.

        Order: bundle.json ``max_length``, tokenizer_config ``model_max_length`` (what transformers
        truncates to), config ``max_position_embeddings`` (minus the architecture's position offset,
        2 for RoBERTa), 512.
        """
        if isinstance(self.manifest.get("max_length"), int) and self.manifest["max_length"] > 0:
            return self.manifest["max_length"]
        positions = self.config.get("max_position_embeddings")
        row = get_architecture(self.model_type)
        offset = row.position_offset if row else 0
        limit = positions - offset if isinstance(positions, int) and positions > offset else None
        configured = self.tokenizer_config.get("model_max_length")
        if isinstance(configured, (int, float)) and 0 < configured < _UNSET_MAX_LENGTH:
            return int(configured) if limit is None else min(int(configured), limit)
        return limit if limit is not None else 512

    def special_token(self, name: str) -> str | None:
        """A special token's text (``mask_token``, ``pad_token``, ...) from the tokenizer settings."""
        for source in (
            self.manifest.get("special_tokens") or {},
            self.special_tokens_map,
            self.tokenizer_config,
        ):
            value = source.get(name)
            if isinstance(value, dict):  # AddedToken serialized as a dict
                value = value.get("content")
            if isinstance(value, str):
                return value
        return None


def _read_json(path: Path, required: bool) -> dict:
    if not path.is_file():
        if required:
            raise BundleError(path, "required file is missing")
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(path, f"not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise BundleError(path, f"expected a JSON object, found {type(data).__name__}")
    return data


def _onnx_files(root: Path) -> list[str]:
    found = []
    for folder in (root, root / "onnx"):
        if folder.is_dir():
            found += sorted(str(p.relative_to(root)) for p in folder.glob("*.onnx") if p.is_file())
    return found


def select_model_file(
    root: Path, precision: str = "int8", model_file: str | os.PathLike | None = None
) -> Path:
    """The ONNX file to load from ``root`` for ``precision`` or the explicit ``model_file``.

    ModelFileNotFoundError (listing the ONNX files that are there) when nothing matches.
    """
    root = Path(root)
    present = _onnx_files(root)
    if model_file is not None:
        path = Path(model_file)
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise ModelFileNotFoundError(
                path, f"model_file not found; ONNX files present: {', '.join(present) or 'none'}"
            )
        return path
    if precision not in _CANDIDATES:
        raise ModelFileNotFoundError(
            root, f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}"
        )
    for candidate in _CANDIDATES[precision]:
        if (root / candidate).is_file():
            return root / candidate
    raise ModelFileNotFoundError(
        root,
        f"no {precision} model file (looked for {', '.join(_CANDIDATES[precision])}); "
        f"ONNX files present: {', '.join(present) or 'none'}; pass precision= or model_file=",
    )


def _check_manifest(root: Path, manifest: dict) -> None:
    path = root / MANIFEST
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            path, f"unknown schema_version {version!r}; this runtime reads version {SCHEMA_VERSION}"
        )
    if manifest.get("format", FORMAT) != FORMAT:
        raise BundleError(path, f"format is {manifest.get('format')!r}, expected {FORMAT!r}")
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise BundleError(path, "'files' must be an object {name: {sha256, bytes}}")


def _verify_files(root: Path, manifest: dict, names: list[str]) -> None:
    """Check size and sha256 of the listed files that the manifest records."""
    problems = []
    for name in names:
        entry = manifest.get("files", {}).get(name)
        if not isinstance(entry, dict):
            continue
        path = root / name
        if not path.is_file():
            problems.append(f"{name}: listed in {MANIFEST} but missing")
            continue
        size = path.stat().st_size
        if isinstance(entry.get("bytes"), int) and entry["bytes"] != size:
            problems.append(f"{name}: {size} bytes, manifest says {entry['bytes']} (truncated or replaced?)")
            continue
        if entry.get("sha256") and file_sha256(path) != entry["sha256"]:
            problems.append(f"{name}: sha256 mismatch with {MANIFEST}")
    if problems:
        raise BundleError(root, "; ".join(problems))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_labels(raw, where: str, problems: list[str]) -> dict[int, str]:
    """``id2label`` as {int: str}, appending to ``problems`` unless the ids are exactly 0..n-1 and every
    label is a string (a hole makes NER fail on every call and text-classification invent ``LABEL_3``)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(f"{where} id2label must be an object {{id: label}}, found {type(raw).__name__}")
        return {}
    labels: dict[int, str] = {}
    bad_keys, bad_names, duplicates = [], [], []
    for key, name in raw.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            bad_keys.append(repr(key))
            continue
        if index in labels:
            duplicates.append(str(index))
        if not isinstance(name, str):
            bad_names.append(f"id {index}: {name!r}")
        labels[index] = str(name)
    if bad_keys:
        problems.append(f"{where} id2label has ids that are not integers: {', '.join(bad_keys)}")
    if duplicates:
        problems.append(f"{where} id2label lists id {', '.join(duplicates)} more than once")
    if bad_names:
        problems.append(f"{where} id2label labels must be strings: {', '.join(bad_names)}")
    count = len(labels)
    missing = sorted(set(range(count)) - set(labels))
    extra = sorted(i for i in labels if not 0 <= i < count)
    if missing or extra:
        span = f"{min(labels)}..{max(labels)}" if labels else "none"
        problems.append(
            f"{where} id2label must have the ids 0..{count - 1} ({count} labels), found ids {span}: "
            f"missing {_id_list(missing)}" + (f", out of range {_id_list(extra)}" if extra else "")
        )
    return labels


def check_id2label(raw, where: str = "config.json") -> list[str]:
    """The problems of an ``id2label`` object (ids exactly 0..n-1, labels strings); [] when it is fine.

    The exporter checks a checkpoint's labels with it before any work, with the rule the loader applies.
    """
    problems: list[str] = []
    _parse_labels(raw, where, problems)
    return problems


def _id_list(ids: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "") if ids else "none"


def _check_metadata(root: Path, manifest: dict, config: dict, tokenizer_config: dict) -> dict[int, str]:
    """Every bundle-level metadata check; returns id2label, raises one BundleError listing every problem.

    Each problem names the file and the numbers, e.g. ``bundle.json max_length 600 exceeds the 512
    positions of the model (config.json max_position_embeddings 514 - position offset 2 for RoBERTa)``.
    """
    problems: list[str] = []

    if manifest.get("id2label"):
        id2label = _parse_labels(manifest["id2label"], MANIFEST, problems)
    else:
        id2label = _parse_labels(config.get("id2label") or None, "config.json", problems)

    model_type = manifest.get("model_type") or config.get("model_type")
    row = get_architecture(model_type if isinstance(model_type, str) else None)
    offset = row.position_offset if row else 0
    positions = config.get("max_position_embeddings")
    limit = None
    if positions is not None:
        if not _is_int(positions) or positions - offset < MIN_MAX_LENGTH:
            problems.append(
                f"config.json max_position_embeddings must be an int >= {MIN_MAX_LENGTH + offset}"
                f"{f' (position offset {offset} for {row.name})' if offset else ''}, found {positions!r}"
            )
        else:
            limit = positions - offset
    table = f"{limit} positions of the model (config.json max_position_embeddings {positions}" + (
        f" - position offset {offset} for {row.name})" if offset else ")"
    )

    def check_length(value, where: str) -> None:
        if not _is_int(value) or value < MIN_MAX_LENGTH:
            problems.append(
                f"{where} must be an int >= {MIN_MAX_LENGTH} (the special tokens and one token), "
                f"found {value!r}"
            )
        elif limit is not None and value > limit:
            problems.append(f"{where} {value} exceeds the {table}")

    if "max_length" in manifest and manifest["max_length"] is not None:
        check_length(manifest["max_length"], f"{MANIFEST} max_length")
    else:  # tokenizer_config's model_max_length sets the length (capped by the positions)
        configured = tokenizer_config.get("model_max_length")
        number = isinstance(configured, (int, float)) and not isinstance(configured, bool)
        if configured is not None and not (number and configured >= _UNSET_MAX_LENGTH):  # not "no limit"
            if not number or configured != int(configured) or configured < MIN_MAX_LENGTH:
                problems.append(
                    f"tokenizer_config.json model_max_length must be an int >= {MIN_MAX_LENGTH} (the special "
                    f"tokens and one token), found {configured!r}"
                )

    problem_type = manifest.get("problem_type") or config.get("problem_type")
    if problem_type is not None and problem_type not in PROBLEM_TYPES:
        where = MANIFEST if manifest.get("problem_type") else "config.json"
        problems.append(
            f"{where} problem_type must be one of {', '.join(PROBLEM_TYPES)} or null, found {problem_type!r}"
        )

    for key in ("input_names", "output_names"):
        names = manifest.get(key)
        if names is None:
            continue
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            problems.append(f"{MANIFEST} {key} must be a non-empty list of names, found {names!r}")
        elif key == "input_names":
            unknown = [n for n in names if n not in _RUNTIME_INPUTS]
            if unknown:
                problems.append(
                    f"{MANIFEST} input_names lists {', '.join(map(repr, unknown))}, which the runtime cannot "
                    f"feed ({', '.join(_RUNTIME_INPUTS)})"
                )
            if "input_ids" not in names:
                problems.append(f"{MANIFEST} input_names has no 'input_ids'")

    if problems:
        count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
        raise BundleError(root, f"bundle metadata is invalid ({count}): " + "; ".join(problems))
    return id2label


def check_graph(bundle: Bundle, input_names, output_names) -> None:
    """BundleError when the graph's inputs or outputs differ from the ones bundle.json lists.

    Called once the session exists (the runtime does not depend on ``onnx`` to read the graph earlier).
    Only a manifest that lists the names is checked (foreign layouts have none), and only for a model file
    the manifest records (a ``model_file=`` of the user's own is not the bundle's graph).
    """
    try:
        relative = bundle.model_path.relative_to(bundle.root).as_posix()
    except ValueError:
        return
    if relative not in (bundle.manifest.get("files") or {}):
        return
    problems = []
    for key, actual in (("input_names", list(input_names)), ("output_names", list(output_names))):
        listed = bundle.manifest.get(key)
        if isinstance(listed, list) and set(listed) != set(actual):
            problems.append(f"{MANIFEST} {key} {listed} but the graph has {actual}")
    if problems:
        raise BundleError(
            bundle.model_path, "the model file does not match the manifest: " + "; ".join(problems)
        )


def _download(repo_id: str, revision: str | None, spec: str) -> Path:
    """Fetch a hub repository's JSON, tokenizer and ONNX files (needs huggingface_hub and a network)."""
    return hub.download(
        repo_id,
        _HUB_PATTERNS,
        lambda reason: BundleError(spec, f"fetching it from the Hugging Face Hub failed ({reason})"),
        revision=revision,
    )


def load_bundle(
    bundle: str | os.PathLike,
    precision: str = "int8",
    model_file: str | os.PathLike | None = None,
    verify: bool = True,
) -> Bundle:
    """Resolve a bundle folder (bertrt, Optimum or transformers.js ``onnx/`` layout), or ``hf://owner/name``.

    :func:`bertrt.hub.resolve_source` decides: only an ``hf://`` string is fetched from the Hugging Face
    Hub; anything else is a folder, and a missing one is "no such folder". BundleError names the path and
    the problem (missing file, bad JSON, unknown schema version, sha256 mismatch, and every metadata
    problem at once: labels, max length, positions; see the module docstring); ModelFileNotFoundError lists
    the ONNX files present when none fits.
    """
    source = hub.resolve_source(bundle, BundleError)
    if source.kind == "hub":
        root = _download(source.repo_id, source.revision, source.spec)
    else:
        root = source.path
        if not root.exists():
            raise BundleError(root, hub.missing_folder_problem(source))
    if not root.is_dir():
        raise BundleError(root, "not a folder (pass the bundle folder, not a file inside it)")

    manifest = _read_json(root / MANIFEST, required=False)
    if manifest:
        _check_manifest(root, manifest)
        layout = "bertrt"
    else:
        layout = (
            "onnx-subfolder" if (root / "onnx").is_dir() and not (root / FP32_FILE).exists() else "optimum"
        )

    ir = None
    if precision in OPENVINO_FILE_PRECISIONS:
        ir = _recorded_ir(root, manifest, precision) if model_file is None else None
        precision = "fp32"  # without a recorded IR: the fp32 graph, converted by OpenVINO at load
    model_path = ir or select_model_file(root, precision, model_file)
    config = _read_json(root / "config.json", required=True)
    tokenizer_path = root / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise BundleError(
            tokenizer_path, "required file is missing (the runtime needs a fast tokenizer.json)"
        )
    tokenizer_config = _read_json(root / "tokenizer_config.json", required=False)
    special_tokens_map = _read_json(root / "special_tokens_map.json", required=False)

    if manifest and verify:
        try:
            relative = str(model_path.relative_to(root))
        except ValueError:
            relative = None
        names = ["tokenizer.json", "config.json", "tokenizer_config.json", "special_tokens_map.json"]
        if relative:
            names.append(relative)
            if model_path.suffix.lower() == ".xml":  # an OpenVINO IR: its weights are a file of their own
                names.append(ir_weights_file(relative))
        _verify_files(root, manifest, names)

    id2label = _check_metadata(root, manifest, config, tokenizer_config)

    task = manifest.get("task")
    if task is not None:
        try:
            task = normalize_task(task)
        except TaskError as exc:
            raise BundleError(root / MANIFEST, str(exc)) from exc
    else:
        try:
            task = infer_task(config)
        except TaskError:
            task = None

    log.info("bundle %s (%s layout): model file %s", root, layout, model_path.name)
    return Bundle(
        root=root,
        layout=layout,
        model_path=model_path,
        tokenizer_path=tokenizer_path,
        config=config,
        tokenizer_config=tokenizer_config,
        special_tokens_map=special_tokens_map,
        manifest=manifest,
        task=task,
        id2label=id2label,
        problem_type=manifest.get("problem_type") or config.get("problem_type"),
    )
