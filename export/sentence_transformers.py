"""Bundle step: the checkpoint's sentence-transformers settings, recorded in bundle.json for the runtime.

Read with plain JSON from the checkpoint folder (no sentence-transformers import): ``modules.json`` (the
module list), the Pooling module's ``config.json`` (``1_Pooling/``), each Dense module's ``config.json``,
``sentence_bert_config.json`` (``max_seq_length``) and ``config_sentence_transformers.json`` (``prompts``,
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


def _pooling(config: dict) -> str | list[str]:
    """sentence-transformers' ``pooling_mode_*`` switches as names (``cls``, ``mean``, ``max``, ...)."""
    modes = [
        k.removeprefix("pooling_mode_").removesuffix("_tokens").removesuffix("_token")
        for k, v in config.items()
        if k.startswith("pooling_mode_") and v
    ]
    return modes[0] if len(modes) == 1 else modes


def _dense(config: dict) -> dict:
    return {
        "in_features": int(config["in_features"]),
        "out_features": int(config["out_features"]),
        "bias": bool(config.get("bias", True)),
        "activation_function": config.get("activation_function"),
    }


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
                info["pooling"] = _pooling(_json(folder / m["path"] / "config.json"))
            elif kind.endswith("Dense"):
                dense.append(_dense(_json(folder / m["path"] / "config.json")))
        info["normalize"] = any(m.get("type", "").endswith("Normalize") for m in modules)
        info["max_seq_length"] = _json(folder / "sentence_bert_config.json").get("max_seq_length")
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
