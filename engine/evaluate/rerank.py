"""``bertrt eval`` for rerank bundles: MRR@10 and nDCG@10 on JSONL ``{query, documents, relevant}``.

``relevant`` lists the relevant documents, by index into ``documents`` or by their text (binary
relevance). Each system ranks every query's documents; the figures are means over the queries, in points
(percent). :func:`mrr_at` and :func:`ndcg_at` are pure numpy. The PyTorch reference (``--pytorch
CHECKPOINT``) is sentence-transformers' ``CrossEncoder`` on the checkpoint (``bertrt.export.rerank``, needs
``bertrt[export]`` and sentence-transformers), ranking the same documents.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import BertrtError, InputError
from ..lines import drop_bom

__all__ = [
    "K",
    "Query",
    "evaluate_rerank",
    "markdown_section",
    "mrr_at",
    "ndcg_at",
    "pytorch_ranker",
    "read_rerank",
    "score_ranker",
]

#: the cut-off of both figures
K = 10


@dataclass(frozen=True)
class Query:
    """One evaluation item: the query, its documents and the indices of the relevant ones."""

    query: str
    documents: tuple[str, ...]
    relevant: frozenset[int]


def _relevant(value, documents: tuple[str, ...], where: str) -> frozenset[int]:
    if not isinstance(value, list):
        raise InputError(f"{where}: 'relevant' must be a list of document indices or texts")
    out = set()
    for entry in value:
        if isinstance(entry, bool) or not isinstance(entry, (int, str)):
            raise InputError(f"{where}: relevant entry {entry!r} is neither an index nor a document text")
        if isinstance(entry, str):
            if entry not in documents:
                raise InputError(f"{where}: relevant text {entry[:40]!r} is not one of the documents")
            out.add(documents.index(entry))
        elif not 0 <= entry < len(documents):
            raise InputError(f"{where}: relevant index {entry} is outside the {len(documents)} documents")
        else:
            out.add(entry)
    return frozenset(out)


def read_rerank(path: str | Path) -> list[Query]:
    """The queries of a JSONL file (blank lines skipped); InputError naming the line of a bad record."""
    path = Path(path)
    items = []
    try:
        lines = drop_bom(path.read_text(encoding="utf-8")).splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected an object with query, documents, relevant")
        query, documents = record.get("query"), record.get("documents")
        if not isinstance(query, str) or not isinstance(documents, list) or not documents:
            raise InputError(f"{where}: needs 'query' (a str) and 'documents' (a non-empty list of str)")
        if not all(isinstance(d, str) for d in documents):
            raise InputError(f"{where}: every document must be a str")
        docs = tuple(documents)
        items.append(Query(query, docs, _relevant(record.get("relevant", []), docs, where)))
    return items


def mrr_at(ranked: list[int], relevant: frozenset[int], k: int = K) -> float:
    """Reciprocal rank of the first relevant document among the first ``k`` (0 when none)."""
    return next((1.0 / (rank + 1) for rank, i in enumerate(ranked[:k]) if i in relevant), 0.0)


def ndcg_at(ranked: list[int], relevant: frozenset[int], k: int = K) -> float:
    """Binary-relevance nDCG of the first ``k`` (0 for a query without relevant documents)."""
    dcg = sum(1.0 / math.log2(rank + 2) for rank, i in enumerate(ranked[:k]) if i in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def score_ranker(rank: Callable[[Query], list[int]], items: list[Query]) -> dict:
    """MRR@10 and nDCG@10 (points) of ``rank`` (a query -> document indices, best first) on ``items``,
    and each query's top document (``labels``, compared between systems)."""
    rankings = [rank(item) for item in items]
    n = max(len(items), 1)
    return {
        "mrr@10": round(100 * sum(mrr_at(r, q.relevant) for r, q in zip(rankings, items)) / n, 2),
        "ndcg@10": round(100 * sum(ndcg_at(r, q.relevant) for r, q in zip(rankings, items)) / n, 2),
        "labels": [r[0] if r else None for r in rankings],
    }


def pytorch_ranker(checkpoint, *, batch_size: int = 32, threads=None) -> Callable[[Query], list[int]]:
    """The PyTorch reference as a ranker (a query -> document indices, best first): sentence-transformers'
    ``CrossEncoder`` on ``checkpoint``; a :class:`~bertrt.errors.BertrtError` without its libraries."""
    try:
        from ..export.rerank import cross_encoder_ranker

        ranker = cross_encoder_ranker(checkpoint, threads, batch_size)
    except ImportError as exc:
        raise BertrtError(
            f"the PyTorch reference (--pytorch) needs torch and sentence-transformers ({exc}): "
            "pip install 'bertrt[export]' sentence-transformers"
        ) from exc
    return lambda item: [r["index"] for r in ranker(item.query, list(item.documents))]


def evaluate_rerank(
    bundle: Path,
    data,
    precisions,
    *,
    batch_size: int = 32,
    threads=None,
    limit=None,
    name=None,
    checkpoint=None,
):
    """:func:`bertrt.evaluate.runner.evaluate_bundle` for a rerank bundle; with ``checkpoint``, the
    PyTorch reference (:func:`pytorch_ranker`) first."""
    from .. import pipeline

    items = list(data) if not isinstance(data, (str, Path)) else read_rerank(data)
    name = name or (Path(data).name if isinstance(data, (str, Path)) else "data")
    if limit is not None:
        items = items[:limit]
    results, systems = {}, {}
    if checkpoint is not None:
        systems["pytorch"] = "sentence-transformers CrossEncoder (PyTorch fp32)"
        results["pytorch"] = score_ranker(
            pytorch_ranker(checkpoint, batch_size=batch_size, threads=threads), items
        )
    for precision in precisions:
        pipe = pipeline("rerank", str(bundle), precision=precision, threads=threads)

        def rank(item: Query, pipe=pipe) -> list[int]:
            return [
                r["index"] for r in pipe(item.query, documents=list(item.documents), batch_size=batch_size)
            ]

        key = f"bertrt-{precision}"
        systems[key] = f"bertrt {precision}"
        results[key] = score_ranker(rank, items)
    keys = list(results)
    agreement = {}
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            same = sum(x == y for x, y in zip(results[a]["labels"], results[b]["labels"]))
            agreement[f"{b} vs {a}"] = round(100 * same / max(len(items), 1), 2)
    for r in results.values():
        r.pop("labels")
    return {
        "task": "rerank",
        "dataset": name,
        "size": len(items),
        "bundle": str(bundle),
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "systems": results,
        "system_names": systems,
        "agreement": agreement,
        "gold_labels_not_in_model": {},
    }


def markdown_section(ev: dict) -> list[str]:
    """The report's lines for one rerank evaluation."""
    out = [
        f"## Rerank: {ev['dataset']} ({ev['size']} queries)",
        "",
        "| system | MRR@10 | nDCG@10 |",
        "|---|---:|---:|",
    ]
    for key, m in ev["systems"].items():
        out.append(f"| {ev['system_names'].get(key, key)} | {m['mrr@10']:.2f} | {m['ndcg@10']:.2f} |")
    if ev["agreement"]:
        out += [
            "",
            "Top-document agreement: " + ", ".join(f"{k} {v:.2f}%" for k, v in ev["agreement"].items()),
        ]
    return out + [""]
