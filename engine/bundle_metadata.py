"""What a bundle says, parsed and checked: labels, lengths, problem type, graph names, and the
sentence-transformers settings (:class:`SentenceTransformers`). :mod:`bertrt.bundle` reads the files and
calls these; every metadata problem is collected and reported in one BundleError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .architectures import get_architecture
from .errors import BundleError

__all__ = [
    "MANIFEST",
    "MIN_MAX_LENGTH",
    "PROBLEM_TYPES",
    "DenseLayer",
    "SentenceTransformers",
    "check_id2label",
    "check_metadata",
]

#: the manifest's file name
MANIFEST = "bundle.json"
# transformers' "no limit" model_max_length is int(1e30); anything this large means "not set".
_UNSET_MAX_LENGTH = 1_000_000

#: The shortest usable max length: the special tokens of one sequence ([CLS] ... [SEP], <s> ... </s>) plus
#: one token of text. A bundle (or an export) with less fails on every call.
MIN_MAX_LENGTH = 3

#: transformers' ``problem_type`` values (None: from the number of labels).
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")

# Graph inputs the runtime can feed (bertrt.session.KNOWN_INPUTS; not imported: it loads numpy).
_RUNTIME_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class DenseLayer:
    """One sentence-transformers Dense module after the pooling (its config; the weights stay in the
    checkpoint): ``out = activation(x @ W.T + b)``."""

    in_features: int
    out_features: int
    bias: bool = True
    #: the activation's class path as sentence-transformers names it (``torch.nn.modules.activation.Tanh``)
    activation: str = "torch.nn.modules.linear.Identity"


@dataclass(frozen=True)
class SentenceTransformers:
    """What a sentence-transformers checkpoint says about its embeddings (bundle.json
    ``sentence_transformers``, recorded by the exporter).

    ``pooling``: the pooling modes, sentence-transformers' ``pooling_mode_*`` names without prefix and
    suffix (``("cls",)``, ``("mean",)``, ``("max",)``, ``("mean_sqrt_len",)``, ...; several are
    concatenated); ``normalize``: a Normalize module follows; ``max_seq_length``: the length the model
    was trained to embed (None: not set); ``dense``: Dense modules after the pooling; ``prompts`` and
    ``default_prompt_name`` from config_sentence_transformers.json; ``modules``: the module class names;
    ``include_prompt``: the Pooling module's (False: prompt tokens are not pooled).
    """

    pooling: tuple[str, ...] = ()
    normalize: bool = False
    max_seq_length: int | None = None
    dense: tuple[DenseLayer, ...] = ()
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    modules: tuple[str, ...] = ()
    #: the Pooling module's ``include_prompt`` (False: a prompt's tokens are left out of the pooling)
    include_prompt: bool = True

    @classmethod
    def from_manifest(cls, record, where) -> SentenceTransformers:
        """Parse bundle.json's ``sentence_transformers`` object; BundleError naming what is malformed."""

        def bad(what: str) -> BundleError:
            return BundleError(where, f"sentence_transformers {what}")

        if not isinstance(record, dict):
            raise bad(f"must be an object, found {type(record).__name__}")
        pooling = record.get("pooling") or ()
        pooling = (pooling,) if isinstance(pooling, str) else pooling
        if not isinstance(pooling, (list, tuple)) or not all(isinstance(p, str) for p in pooling):
            raise bad(f"pooling must be a name or a list of names, found {record.get('pooling')!r}")
        length = record.get("max_seq_length")
        if length is not None and (not _is_int(length) or length < MIN_MAX_LENGTH):
            raise bad(f"max_seq_length must be an int >= {MIN_MAX_LENGTH} or null, found {length!r}")
        dense = []
        for layer in record.get("dense") or ():
            try:
                dense.append(
                    DenseLayer(
                        int(layer["in_features"]),
                        int(layer["out_features"]),
                        bool(layer.get("bias", True)),
                        str(layer.get("activation_function") or DenseLayer.activation),
                    )
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                raise bad(f"dense layer {layer!r} needs in_features and out_features") from None
        prompts = record.get("prompts") or {}
        if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
            raise bad(f"prompts must be an object {{name: prompt}}, found {prompts!r}")
        default = record.get("default_prompt_name")
        if default is not None and default not in prompts:
            raise bad(f"default_prompt_name {default!r} is not one of its prompts ({', '.join(prompts)})")
        normalize, modules = (
            bool(record.get("normalize", False)),
            tuple(map(str, record.get("modules") or ())),
        )
        prompts = {str(k): v for k, v in prompts.items()}
        include_prompt = record.get("include_prompt", True)
        if not isinstance(include_prompt, bool):
            raise bad(f"include_prompt must be true or false, found {include_prompt!r}")
        return cls(tuple(pooling), normalize, length, tuple(dense), prompts, default, modules, include_prompt)


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


def check_metadata(root: Path, manifest: dict, config: dict, tokenizer_config: dict) -> dict[int, str]:
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
