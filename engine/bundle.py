"""The bundle format: what ``bertrt export`` writes and the runtime reads, and how a folder is resolved.

A bertrt bundle is a folder::

    model.onnx            optimized fp32 graph
    model.int8.onnx       int8 quantization of model.onnx (recipe in bundle.json "quantization")
    model.fp16.onnx       optional (``bertrt export --fp16``): fp16 graph for CUDA (bundle.json "fp16")
    tokenizer.json        fast tokenizer (HF tokenizers)
    tokenizer_config.json tokenizer settings transformers uses (clean_up_tokenization_spaces, ...)
    config.json           the checkpoint's config (id2label, model_type, max_position_embeddings)
    bundle.json           the manifest (below)
    model.openvino.xml    optional (``bertrt export --openvino-ir``): OpenVINO IR of model.onnx, + .bin
    model.openvino-int8.xml  optional: the IR with nncf int8 weights, + .bin (bundle.json "openvino_ir")

bundle.json keys (schema version 1): schema_version, format ("bertrt-bundle"), task, model_type,
architecture, input_names, output_names, max_length, id2label, problem_type, special_tokens,
files {name: {sha256, bytes}}, fusion, quantization, validation, versions, created, source; openvino_ir
when the export wrote IR files; fp16 when it wrote ``model.fp16.onnx``; sentence_transformers for a sentence-transformers checkpoint;
matmul_ops (``bertrt bench``'s op count per text, :mod:`bertrt.bench.ops`) when the graph could be counted.

Which model file a precision reads is the backend's choice (``model_file`` of its module in
:mod:`bertrt.backends`): onnxruntime reads ``model.int8.onnx`` / ``model.onnx`` / ``model.fp16.onnx``; OpenVINO the IR of that
precision when bundle.json records it (its ``.xml`` and ``.bin`` verified like every file), else
``model.onnx``. An IR file the manifest does not record (stale, or copied in) is not used.

``sentence_transformers`` (written by the exporter from the checkpoint's modules.json, 1_Pooling/,
sentence_bert_config.json, config_sentence_transformers.json and the Dense modules' config.json) is read
into :class:`SentenceTransformers`; ``tuning.json`` (``bertrt tune``) by :func:`read_tuning`. This module
is the only reader of a bundle's files; :func:`read_metadata` reads just its JSON (no tokenizer, no hashes).

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
from .bundle_metadata import (
    _UNSET_MAX_LENGTH,
    MANIFEST,
    MIN_MAX_LENGTH,
    PROBLEM_TYPES,
    DenseLayer,
    SentenceTransformers,
    check_id2label,
    check_metadata,
)
from .errors import BundleError, ModelFileNotFoundError, TaskError
from .tasks import infer_task, normalize_task

__all__ = [
    "BUNDLE_FILES",
    "FP16_CANDIDATES",
    "FP16_FILE",
    "FP32_CANDIDATES",
    "FP32_FILE",
    "INT8_CANDIDATES",
    "INT8_FILE",
    "MANIFEST",
    "METADATA_FILES",
    "MIN_MAX_LENGTH",
    "OPENVINO_FILE",
    "OPENVINO_INT8_FILE",
    "PROBLEM_TYPES",
    "SCHEMA_VERSION",
    "TOKENIZER_FILES",
    "TUNING_FILE",
    "Bundle",
    "DenseLayer",
    "Metadata",
    "SentenceTransformers",
    "check_graph",
    "check_id2label",
    "file_sha256",
    "ir_weights_file",
    "load_bundle",
    "read_metadata",
    "read_tuning",
    "select_model_file",
]

log = logging.getLogger("bertrt")

SCHEMA_VERSION = 1
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
#: the fp16 graph for CUDA (float32 inputs and outputs kept), written by ``bertrt export --fp16``
FP16_FILE = "model.fp16.onnx"
#: OpenVINO IR of model.onnx (fp32 weights) and of its nncf int8 weights; each with a .bin beside it
OPENVINO_FILE = "model.openvino.xml"
OPENVINO_INT8_FILE = "model.openvino-int8.xml"
#: the JSON and tokenizer files beside the model files (each read when present; config.json and
#: tokenizer.json are required)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
METADATA_FILES = (MANIFEST, "config.json", *TOKENIZER_FILES)
#: the file ``bertrt tune`` writes into the bundle and ``backend="auto"`` reads
TUNING_FILE = "tuning.json"
FORMAT = "bertrt-bundle"

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
#: fp16: bertrt's, then the transformers.js layout's
FP16_CANDIDATES = (FP16_FILE, "onnx/model_fp16.onnx")
_CANDIDATES = {"fp32": FP32_CANDIDATES, "int8": INT8_CANDIDATES, "fp16": FP16_CANDIDATES}

# Files the runtime fetches from a hub repository.
_HUB_PATTERNS = ("*.json", "*.onnx", "onnx/*.onnx", "*.txt", "model.openvino*.xml", "model.openvino*.bin")


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


def _model_companions(root: Path, model: Path) -> list[str]:
    """Files read with ``model`` (relative names): its external data (``model.onnx_data``, ``.data``) and an
    OpenVINO IR's ``.bin`` weights."""
    extra = sorted(model.parent.glob(model.name + "*"))
    if model.suffix.lower() == ".xml":
        extra.append(model.with_suffix(".bin"))
    return [str(p.relative_to(root).as_posix()) for p in extra if p != model and p.is_file()]


#: every file an export may write: what ``bertrt export`` writes and replaces, and what the runtime reads
BUNDLE_FILES = (
    FP32_FILE,
    INT8_FILE,
    FP16_FILE,
    OPENVINO_FILE,
    ir_weights_file(OPENVINO_FILE),
    OPENVINO_INT8_FILE,
    ir_weights_file(OPENVINO_INT8_FILE),
    *METADATA_FILES,
)


def recorded_file(root: Path, manifest: dict, name: str, fallback: str) -> Path | None:
    """``root / name`` when bundle.json records it and it is there, else None (logging why it is not read,
    and that ``fallback`` is read instead): for optional files such as an OpenVINO IR."""
    recorded = name in (manifest.get("files") or {})
    if recorded and (root / name).is_file():
        return root / name
    if (root / name).is_file():
        log.warning("%s: %s is not recorded in %s (stale?): reading %s", root, name, MANIFEST, fallback)
    elif recorded:
        log.warning("%s: %s is recorded in %s but missing: reading %s", root, name, MANIFEST, fallback)
    return None


@dataclass(frozen=True)
class Bundle:
    """A resolved model folder: which files to load and everything the runtime reads from it.

    The sha256 of each file is computed once (when verified at load, or on first use) and kept:
    :meth:`file_sha256`, :attr:`content_hash`.
    """

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
    #: the checkpoint's sentence-transformers settings (None: not a sentence-transformers checkpoint)
    sentence_transformers: SentenceTransformers | None = None
    _digests: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def model_type(self) -> str | None:
        return self.manifest.get("model_type") or self.config.get("model_type")

    @property
    def model_file(self) -> str:
        """The model file's name relative to the folder (what ``model_file=`` selects again)."""
        model = self.model_path
        return model.relative_to(self.root).as_posix() if model.is_relative_to(self.root) else model.name

    @property
    def runtime_files(self) -> list[str]:
        """The files the runtime reads (relative names): the JSON and tokenizer files present, the model
        file and what is read with it (external data, an OpenVINO IR's ``.bin``). What a worker needs."""
        names = [n for n in METADATA_FILES if (self.root / n).is_file()]
        names.append(self.model_file)
        if self.model_path.is_relative_to(self.root):
            names += _model_companions(self.root, self.model_path)
        return names

    def file_sha256(self, name: str) -> str:
        """Hex sha256 of the bundle file ``name`` (relative), computed once."""
        digest = self._digests.get(name)
        if digest is None:
            digest = self._digests[name] = file_sha256(self.root / name)
        return digest

    @property
    def content_hash(self) -> str:
        """sha256 over the :attr:`runtime_files` and their sha256, bundle.json left out (its creation time
        and paths are not the model): equal for the same model, tokenizer and settings."""
        digest = hashlib.sha256()
        for name in self.runtime_files:
            if name != MANIFEST:
                digest.update(f"{name}\0{self.file_sha256(name)}\n".encode())
        return digest.hexdigest()

    @property
    def tuning(self) -> dict | None:
        """The folder's tuning.json (``bertrt tune``), None when there is none."""
        return read_tuning(self.root)

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
            root, f"unknown precision {precision!r}; expected one of {', '.join(_CANDIDATES)}"
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


def _verify_files(root: Path, manifest: dict, names: list[str]) -> dict[str, str]:
    """Check size and sha256 of the listed files that the manifest records; {name: sha256} of those."""
    problems, digests = [], {}
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
        if entry.get("sha256"):
            digests[name] = file_sha256(path)
            if digests[name] != entry["sha256"]:
                problems.append(f"{name}: sha256 mismatch with {MANIFEST}")
    if problems:
        raise BundleError(root, "; ".join(problems))
    return digests


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


def _download(repo_id: str, revision: str | None, spec: str, patterns=_HUB_PATTERNS) -> Path:
    """Fetch a hub repository's JSON, tokenizer and ONNX files (needs huggingface_hub and a network)."""
    return hub.download(
        repo_id,
        patterns,
        lambda reason: BundleError(spec, f"fetching it from the Hugging Face Hub failed ({reason})"),
        revision=revision,
    )


def _resolve_root(bundle, patterns=_HUB_PATTERNS) -> Path:
    """The local folder of ``bundle`` (a path, or ``hf://`` fetched with ``patterns``); BundleError when
    it is missing or not a folder."""
    source = hub.resolve_source(bundle, BundleError)
    if source.kind == "hub":
        root = _download(source.repo_id, source.revision, source.spec, patterns)
    else:
        root = source.path
        if not root.exists():
            raise BundleError(root, hub.missing_folder_problem(source))
    if not root.is_dir():
        raise BundleError(root, "not a folder (pass the bundle folder, not a file inside it)")
    return root


def _task_of(root: Path, manifest: dict, config: dict) -> str | None:
    """bundle.json's task (BundleError when it is unknown), else the one config.json's head implies, else
    None."""
    task = manifest.get("task")
    if task is not None:
        try:
            return normalize_task(task)
        except TaskError as exc:
            raise BundleError(root / MANIFEST, str(exc)) from exc
    try:
        return infer_task(config)
    except TaskError:
        return None


@dataclass(frozen=True)
class Metadata:
    """A bundle's JSON only (:func:`read_metadata`): for callers that need its task or labels, not a model."""

    root: Path
    manifest: dict
    config: dict
    task: str | None

    @property
    def id2label(self) -> dict[str, str]:
        """The labels as written (bundle.json's, else config.json's), ids as strings; unchecked."""
        raw = self.manifest.get("id2label") or self.config.get("id2label") or {}
        return {str(k): v for k, v in raw.items()} if isinstance(raw, dict) else {}


def read_metadata(bundle: str | os.PathLike) -> Metadata:
    """bundle.json and config.json of ``bundle`` (a folder or ``hf://``, whose JSON files alone are
    fetched): no tokenizer, no model file, no hashing. BundleError for a missing folder or bad JSON."""
    root = _resolve_root(bundle, ("*.json",))
    manifest = _read_json(root / MANIFEST, required=False)
    config = _read_json(root / "config.json", required=False)
    return Metadata(root, manifest, config, _task_of(root, manifest, config))


def read_tuning(root) -> dict | None:
    """The bundle folder's tuning.json, None when there is none; BundleError when it is unreadable."""
    path = Path(root) / TUNING_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(path, f"not valid JSON ({exc}); run bertrt tune again or delete it") from exc
    if not isinstance(data, dict) or not isinstance(data.get("machines"), dict):
        raise BundleError(path, "expected an object with 'machines' {cpu key: result}")
    return data


def load_bundle(
    bundle: str | os.PathLike,
    precision: str = "int8",
    model_file: str | os.PathLike | None = None,
    verify: bool = True,
    backend: str = "onnxruntime",
) -> Bundle:
    """Resolve a bundle folder (bertrt, Optimum or transformers.js ``onnx/`` layout), or ``hf://owner/name``.

    :func:`bertrt.hub.resolve_source` decides: only an ``hf://`` string is fetched from the Hugging Face
    Hub; anything else is a folder, and a missing one is "no such folder". The model file is
    ``model_file``, else the one ``backend`` reads at ``precision`` (its module in :mod:`bertrt.backends`).
    BundleError names the path and the problem (missing file, bad JSON, unknown schema version, sha256
    mismatch, and every metadata problem at once: labels, max length, positions; see the module
    docstring); ModelFileNotFoundError lists the ONNX files present when none fits.
    """
    from .backends import get_backend

    root = _resolve_root(bundle)
    manifest = _read_json(root / MANIFEST, required=False)
    if manifest:
        _check_manifest(root, manifest)
        layout = "bertrt"
    else:
        layout = (
            "onnx-subfolder" if (root / "onnx").is_dir() and not (root / FP32_FILE).exists() else "optimum"
        )

    if model_file is not None:
        model_path = select_model_file(root, precision, model_file)
    else:
        model_path = get_backend(backend).model_file(root, manifest, precision)
    config = _read_json(root / "config.json", required=True)
    tokenizer_path = root / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise BundleError(
            tokenizer_path, "required file is missing (the runtime needs a fast tokenizer.json)"
        )
    tokenizer_config = _read_json(root / "tokenizer_config.json", required=False)
    special_tokens_map = _read_json(root / "special_tokens_map.json", required=False)

    digests = {}
    if manifest and verify:
        names = [n for n in METADATA_FILES if n != MANIFEST]
        if model_path.is_relative_to(root):
            relative = model_path.relative_to(root).as_posix()
            names += [relative, *_model_companions(root, model_path)]
        digests = _verify_files(root, manifest, names)

    id2label = check_metadata(root, manifest, config, tokenizer_config)
    task = _task_of(root, manifest, config)
    st = manifest.get("sentence_transformers")
    st = None if st is None else SentenceTransformers.from_manifest(st, root / MANIFEST)

    log.info("bundle %s (%s layout): model file %s", root, layout, model_path.name)
    problem_type = manifest.get("problem_type") or config.get("problem_type")
    # fields in Bundle's order: where it is, what it loads, what it says
    files = (root, layout, model_path, tokenizer_path)
    says = (config, tokenizer_config, special_tokens_map, manifest, task, id2label, problem_type, st)
    return Bundle(*files, *says, _digests=digests)
