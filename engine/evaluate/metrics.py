"""Scores: seqeval's entity-level report for NER, accuracy and F1 for classifiers, system agreement.

Figures are percentages rounded to two decimals. NER uses seqeval (the ``bertrt[eval]`` extra; its
default, conlleval-compatible chunking), imported on first use. The classifier figures are computed
here: F1 of a label is ``2 tp / (gold count + predicted count)``, 0 when the label is in neither,
which is scikit-learn's ``f1_score(..., zero_division=0)``; macro-F1 is their mean.
"""

from __future__ import annotations

import re
import string
from collections import Counter

from ..errors import BertrtError, InputError

__all__ = [
    "accuracy",
    "agreement",
    "classifier_metrics",
    "f1_per_label",
    "ner_metrics",
    "pct",
    "require_seqeval",
    "squad_metrics",
    "squad_normalize",
]


def pct(x) -> float:
    """A fraction as a percentage with two decimals."""
    return round(100.0 * float(x), 2)


def require_seqeval() -> None:
    """Raise a :class:`~bertrt.errors.BertrtError` naming the extra when seqeval is not installed."""
    try:
        import seqeval.metrics  # noqa: F401
    except ImportError as exc:
        raise BertrtError(f"entity-level scores need seqeval ({exc}): pip install 'bertrt[eval]'") from exc


def ner_metrics(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """seqeval entity-level report: per type, micro and macro (percent, 2 decimals), with supports."""
    require_seqeval()
    from seqeval.metrics import accuracy_score, classification_report
    from seqeval.metrics.sequence_labeling import get_entities

    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise InputError("gold and predicted tag sequences differ in number or length")
    report = classification_report(gold, pred, output_dict=True, zero_division=0)

    def row(d):
        return {
            "precision": pct(d["precision"]),
            "recall": pct(d["recall"]),
            "f1": pct(d["f1-score"]),
            "support": int(d["support"]),
        }

    per_type = {k: row(v) for k, v in report.items() if not k.endswith(" avg")}
    return {
        "per_type": dict(sorted(per_type.items())),
        "micro": row(report["micro avg"]),
        "macro": row(report["macro avg"]),
        "token_accuracy": pct(accuracy_score(gold, pred)),
        "predicted_entities": len(get_entities(pred)),
        "sentences": len(gold),
        "tokens": sum(len(g) for g in gold),
    }


def accuracy(gold: list, pred: list) -> float:
    """The fraction of positions where ``pred`` equals ``gold`` (0.0 for empty lists)."""
    return sum(g == p for g, p in zip(gold, pred)) / len(gold) if gold else 0.0


def f1_per_label(gold: list[str], pred: list[str], labels: list[str]) -> list[float]:
    """F1 (a fraction) of each of ``labels``, one-vs-rest."""
    gold_n, pred_n = Counter(gold), Counter(pred)
    hits = Counter(g for g, p in zip(gold, pred) if g == p)
    return [
        2.0 * hits[lab] / (gold_n[lab] + pred_n[lab]) if gold_n[lab] + pred_n[lab] else 0.0 for lab in labels
    ]


def classifier_metrics(gold: list[str], pred: list[str]) -> dict:
    """Accuracy, macro-F1 and per-label F1 (percent), plus the positive-class F1 when there is one."""
    if len(gold) != len(pred):
        raise InputError(f"{len(gold)} gold labels but {len(pred)} predictions")
    labels = sorted(set(gold) | set(pred))
    per_label = f1_per_label(gold, pred, labels)
    out = {
        "accuracy": pct(accuracy(gold, pred)),
        "macro_f1": pct(sum(per_label) / len(per_label) if per_label else 0.0),
        "f1_per_label": {lab: pct(f) for lab, f in zip(labels, per_label)},
        "examples": len(gold),
    }
    if "positive" in labels:
        out["f1_positive"] = out["f1_per_label"]["positive"]
    return out


def agreement(a: list, b: list) -> float:
    """Percent of equal items of two prediction lists (lists of tag lists are flattened first)."""
    flat_a = [x for s in a for x in (s if isinstance(s, list) else [s])]
    flat_b = [x for s in b for x in (s if isinstance(s, list) else [s])]
    return pct(sum(x == y for x, y in zip(flat_a, flat_b)) / max(len(flat_a), 1))


# -- extractive question answering (SQuAD v1.1's exact match and token F1) ----------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def squad_normalize(text: str) -> str:
    """An answer as SQuAD compares it: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(prediction: str, gold: str) -> float:
    pred, ref = squad_normalize(prediction).split(), squad_normalize(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(answers: list[list[str]], predictions: list[str]) -> dict:
    """``exact_match`` and ``f1`` in points: per question the best over its gold ``answers`` (a question
    with no gold answer counts as answered right when the prediction is empty), averaged."""
    if len(answers) != len(predictions):
        raise InputError(f"{len(answers)} questions with answers but {len(predictions)} predictions")
    if not answers:
        return {"exact_match": 0.0, "f1": 0.0, "support": 0}
    exact = f1 = 0.0
    for golds, prediction in zip(answers, predictions):
        golds = golds or [""]
        exact += max(float(squad_normalize(prediction) == squad_normalize(g)) for g in golds)
        f1 += max(
            _token_f1(prediction, g) if squad_normalize(g) or squad_normalize(prediction) else 1.0
            for g in golds
        )
    return {"exact_match": pct(exact / len(answers)), "f1": pct(f1 / len(answers)), "support": len(answers)}
