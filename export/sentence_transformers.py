"""Bundle step: the checkpoint's sentence-transformers settings, recorded in bundle.json for the runtime.

Read with plain JSON from the checkpoint folder (no sentence-transformers import): ``modules.json`` (the
module list), the Pooling module's ``config.json`` (``1_Pooling/``), each Dense module's ``config.json``,
``sentence_bert_config.json`` (``max_seq_length``; sentence-transformers >= 5.4 keeps it as the tokenizer's
``model_max_length``) and ``config_sentence_transformers.json`` (``prompts``,
``default_prompt_name``). The record is what :class:`bertrt.bundle.SentenceTransformers` reads.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

__all__ = ["read_settings"]

log = logging.getLogger("bertrt.export")


def _json(path: Path) -> dict:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


# sentence-transformers' older ``pooling_mode_*`` switches, in the order it concatenates them
_LEGACY_MODES = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def _pooling(config: dict) -> str | list[str]:
    """The Pooling config's modes as sentence-transformers names them (``cls``, ``mean``, ``max``,
    ``mean_sqrt_len_tokens``, ``weightedmean``, ``lasttoken``): its ``pooling_mode`` (a name or a list,
    sentence-transformers >= 5.4) or the older ``pooling_mode_*`` switches; none set means mean."""
    if "pooling_mode" in config:
        mode = config["pooling_mode"]
        modes = [mode] if isinstance(mode, str) else [str(m) for m in mode]
    else:
        modes = [name for key, name in _LEGACY_MODES.items() if config.get(key)] or ["mean"]
    return modes[0] if len(modes) == 1 else modes


def _dense(config: dict) -> dict:
    return {
        "in_features": int(config["in_features"]),
        "out_features": int(config["out_features"]),
        "bias": bool(config.get("bias", True)),
        "activation_function": config.get("activation_function"),
    }


def _max_seq_length(folder: Path) -> int | None:
    """``max_seq_length`` of sentence_bert_config.json (sentence-transformers < 5.4), else the tokenizer's
    ``model_max_length`` where sentence-transformers >= 5.4 saves it (None: "no limit" or not set)."""
    length = _json(folder / "sentence_bert_config.json").get("max_seq_length")
    if length is None:
        length = _json(folder / "tokenizer_config.json").get("model_max_length")
    return int(length) if isinstance(length, (int, float)) and 0 < length < 1_000_000 else None


def read_settings(folder: Path) -> dict | None:
    """bundle.json's ``sentence_transformers`` record for the checkpoint ``folder``; None when it is not a
    sentence-transformers checkpoint (no modules.json) or its files cannot be read (logged)."""
    modules_path = folder / "modules.json"
    if not modules_path.is_file():
        return None
    try:
        modules = json.loads(modules_path.read_text(encoding="utf-8"))
        info: dict = {"modules": [m.get("type", "").rsplit(".", 1)[-1] for m in modules]}
        dense = []
        for m in modules:
            kind = m.get("type", "")
            if kind.endswith("Pooling"):
                pooling = _json(folder / m["path"] / "config.json")
                info["pooling"] = _pooling(pooling)
                info["include_prompt"] = bool(pooling.get("include_prompt", True))
            elif kind.endswith("Dense"):
                dense.append(_dense(_json(folder / m["path"] / "config.json")))
        info["normalize"] = any(m.get("type", "").endswith("Normalize") for m in modules)
        info["max_seq_length"] = _max_seq_length(folder)
        if dense:
            info["dense"] = dense
        settings = _json(folder / "config_sentence_transformers.json")
        if settings.get("prompts"):
            info["prompts"] = settings["prompts"]
            info["default_prompt_name"] = settings.get("default_prompt_name")
        return info
    except (OSError, json.JSONDecodeError, KeyError, AttributeError, TypeError, ValueError) as exc:
        log.warning("ignoring unreadable sentence-transformers files in %s: %s", folder, exc)
        return None
