"""Step 4: validation of the exported graphs against the PyTorch model on fixed sample inputs.

The samples are a padded batch of sentences of different lengths, a padded batch of sentence pairs
(``token_type_ids`` = 1 on the second segment where the graph declares them: the graph's inputs decide,
not the tokenizer, whose ``model_input_names`` may list ``token_type_ids`` for a graph without them, as
DeBERTa-v3's does) and one unpadded sentence; for fill-mask every sentence holds the tokenizer's mask
token. PyTorch and onnxruntime are fed the same arrays.

* fp32 (``model.onnx``): max |Δ| of the output (``logits`` or ``last_hidden_state``) must be
  ≤ the architecture's ``fp32_tolerance`` (:mod:`bertrt.architectures`), by default :data:`FP32_ATOL`.
  Token-level outputs are compared on real tokens only (``attention_mask == 1``): padded positions are
  never read by any pipeline, and the fused Attention kernel leaves them different from PyTorch's.
* int8 (``model.int8.onnx``): figures for the manifest: max |Δ|, and per task: label / token argmax
  agreement, cosine of mean-pooled embeddings, top-5 overlap at the mask positions (fill-mask).
  :data:`INT8_GATES` holds the minimum figures an int8 graph must reach.

Every failure is collected; one :class:`ValidationError` carries all the numbers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bertrt.architectures import Architecture
from bertrt.errors import ExportError, ValidationError

__all__ = [
    "FP32_ATOL",
    "INT8_GATES",
    "SAMPLE_PAIRS",
    "SAMPLE_TEXTS",
    "argmax_agreement",
    "compare",
    "graph_input_names",
    "cosine_rows",
    "masked_max_abs_diff",
    "mean_pool",
    "sample_batches",
    "topk_overlap",
    "validate_bundle",
]

log = logging.getLogger("bertrt.export")

FP32_ATOL = 1e-4

#: figure -> minimum an int8 graph must reach (only figures the task produces are checked). These are
#: gross-breakage gates (a wrong recipe or a broken kernel), not quality targets: the figures themselves
#: are in the manifest. Label agreement over a handful of sentences is too coarse to gate.
INT8_GATES = {
    "cosine_min": 0.95,
    "token_agreement": 0.9,
    "top5_overlap": 0.6,
}

SAMPLE_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Maria works at Acme Corp. in Groningen.",
    "Élodie visited São Paulo and Zürich last year!",
    "Short one.",
    "A somewhat longer sentence, with punctuation; numbers like 42 and 3.14, and then a question?",
)
SAMPLE_PAIRS = (
    ("How old are you?", "I am six years old."),
    ("Where is Paris?", "Paris is the capital of France, a country in Europe."),
)
# For fill-mask, "{mask}" is replaced by the tokenizer's mask token.
MASK_TEXTS = (
    "The capital of France is {mask}.",
    "Maria works at {mask} Corp. in Groningen.",
    "I love {mask} and coffee.",
    "The quick brown {mask} jumps over the lazy dog, again and again.",
)


# ---- pure numpy figures -------------------------------------------------------------------------------


def masked_max_abs_diff(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """max |a - b|; with ``mask`` (batch, seq) only over positions where it is 1."""
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    if mask is not None:
        diff = diff[mask.astype(bool)]
    return float(diff.max()) if diff.size else 0.0


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of (batch, seq, dim) hidden states over real tokens -> (batch, dim)."""
    m = mask.astype(hidden.dtype)[..., None]
    return (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of two (n, dim) arrays."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    num = (a * b).sum(axis=-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return num / np.clip(den, 1e-12, None)


def argmax_agreement(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Fraction of positions (rows, or masked tokens) whose argmax over the last axis agrees."""
    same = a.argmax(axis=-1) == b.argmax(axis=-1)
    if mask is not None:
        same = same[mask.astype(bool)]
    return float(same.mean()) if same.size else 1.0


def topk_overlap(a: np.ndarray, b: np.ndarray, k: int = 5) -> float:
    """Mean |top-k(a) ∩ top-k(b)| / k over the rows of two (n, vocab) arrays."""
    ta = np.argsort(-a, axis=-1)[:, :k]
    tb = np.argsort(-b, axis=-1)[:, :k]
    overlaps = [len(set(x) & set(y)) / k for x, y in zip(ta.tolist(), tb.tolist())]
    return float(np.mean(overlaps)) if overlaps else 1.0


# ---- inputs and runs ----------------------------------------------------------------------------------


def sample_batches(
    tokenizer, task: str, max_length: int, token_type_ids: bool = True
) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The fixed validation batches as numpy int64 arrays: (name, encoding); ``token_type_ids=False``
    (an architecture without segment ids) leaves them out even where the tokenizer gives them."""
    length = min(max_length, 128)
    kw = {"padding": True, "truncation": True, "max_length": length, "return_tensors": "np"}
    if task == "fill-mask":
        texts = [t.format(mask=tokenizer.mask_token) for t in MASK_TEXTS]
        batches = [("padded batch", tokenizer(texts, **kw)), ("single", tokenizer(texts[:1], **kw))]
    else:
        texts = list(SAMPLE_TEXTS)
        pairs = ([p[0] for p in SAMPLE_PAIRS], [p[1] for p in SAMPLE_PAIRS])
        batches = [
            ("padded batch", tokenizer(texts, **kw)),
            ("pair batch", tokenizer(*pairs, **kw)),
            ("single", tokenizer(texts[:1], **kw)),
        ]
    return [
        (
            name,
            {
                k: np.asarray(v, dtype=np.int64)
                for k, v in enc.items()
                if token_type_ids or k != "token_type_ids"
            },
        )
        for name, enc in batches
    ]


def _torch_outputs(model, batches, output_name: str) -> list[np.ndarray]:
    import inspect

    import torch

    accepted = set(inspect.signature(model.forward).parameters)
    outs = []
    with torch.no_grad():
        for _, enc in batches:
            feed = {k: torch.from_numpy(v) for k, v in enc.items() if k in accepted}
            outs.append(getattr(model(**feed), output_name).float().numpy())
    return outs


def graph_input_names(path: Path) -> list[str]:
    """The inputs the graph at ``path`` declares (what the runtime feeds it)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [i.name for i in session.get_inputs()]


def _onnx_outputs(path: Path, batches, output_name: str) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    outs = []
    for _, enc in batches:
        feed = {n: enc[n] if n in enc else np.zeros_like(enc["input_ids"]) for n in names}
        outs.append(session.run([output_name], feed)[0])
    return outs


def compare(
    task: str, reference: list[np.ndarray], candidate: list[np.ndarray], batches, mask_id: int | None
):
    """Figures of ``candidate`` against ``reference`` outputs (pure numpy)."""
    token_level = task != "text-classification"
    diffs, figures = [], {}
    cos, agree_num, agree_den, top5, top1 = [], 0.0, 0, [], []
    for ref, cand, (_, enc) in zip(reference, candidate, batches):
        mask = enc["attention_mask"] if token_level else None
        diffs.append(masked_max_abs_diff(ref, cand, mask))
        if task == "feature-extraction":
            cos.extend(
                cosine_rows(mean_pool(ref, enc["attention_mask"]), mean_pool(cand, enc["attention_mask"]))
            )
        elif task == "text-classification":
            agree_num += argmax_agreement(ref, cand) * len(ref)
            agree_den += len(ref)
        elif task == "token-classification":
            n = int(enc["attention_mask"].sum())
            agree_num += argmax_agreement(ref, cand, enc["attention_mask"]) * n
            agree_den += n
        elif task == "fill-mask":
            where = enc["input_ids"] == mask_id
            top5.append((topk_overlap(ref[where], cand[where], 5), int(where.sum())))
            top1.append((argmax_agreement(ref[where], cand[where]), int(where.sum())))
    figures["max_abs_diff"] = max(diffs)
    if cos:
        figures["cosine_min"] = float(np.min(cos))
        figures["cosine_mean"] = float(np.mean(cos))
    if agree_den:
        key = "label_agreement" if task == "text-classification" else "token_agreement"
        figures[key] = agree_num / agree_den
    if top5:
        n = sum(c for _, c in top5)
        figures["top5_overlap"] = sum(v * c for v, c in top5) / n
        figures["top1_agreement"] = sum(v * c for v, c in top1) / n
    return figures


def resolve_int8_gates(overrides: dict[str, float] | None = None, enabled: bool = True) -> dict[str, float]:
    """The int8 accuracy gates in force: :data:`INT8_GATES` updated by ``overrides``; {} when disabled."""
    if not enabled:
        return {}
    gates = dict(INT8_GATES)
    for key, value in (overrides or {}).items():
        if key not in INT8_GATES:
            raise ExportError(f"unknown int8 gate {key!r}; known gates: {', '.join(INT8_GATES)}")
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise ExportError(f"int8 gate {key} must be a number in [0, 1], got {value!r}")
        gates[key] = float(value)
    return gates


def validate_bundle(
    model,
    tokenizer,
    task: str,
    fp32_path: Path,
    int8_path: Path | None,
    max_length: int,
    int8_gates: dict[str, float] | None = None,
    architecture: Architecture | None = None,
) -> dict:
    """Validate the fp32 (and int8) graphs; return the manifest's ``validation`` record.

    ``int8_gates`` (default :data:`INT8_GATES`; ``{}`` disables them) are the minimum agreement figures an
    int8 graph must reach; a miss fails the export with every figure in the message. The fp32 tolerance
    comes from ``architecture`` (its table row; :data:`FP32_ATOL` when it sets none) and is not an
    option: a graph that disagrees with PyTorch is wrong.
    """
    gates = INT8_GATES if int8_gates is None else int8_gates
    own = architecture.fp32_tolerance if architecture is not None else None
    atol = FP32_ATOL if own is None else own
    output_name = "last_hidden_state" if task == "feature-extraction" else "logits"
    batches = sample_batches(
        tokenizer, task, max_length, token_type_ids="token_type_ids" in graph_input_names(fp32_path)
    )
    reference = _torch_outputs(model, batches, output_name)
    attention = getattr(model.config, "_attn_implementation", None) or "default"
    record = {
        "reference": f"PyTorch (transformers) fp32, {attention} attention",
        "output": output_name,
        "compared_positions": "real tokens (attention_mask == 1)" if task != "text-classification" else "all",
        "batches": {name: list(enc["input_ids"].shape) for name, enc in batches},
        "fp32_atol": atol,
    }
    failures = []
    record["fp32"] = compare(
        task, reference, _onnx_outputs(fp32_path, batches, output_name), batches, tokenizer.mask_token_id
    )
    if not record["fp32"]["max_abs_diff"] <= atol:
        failures.append(f"fp32 max|Δ| of {output_name} = {record['fp32']['max_abs_diff']:.3g} > {atol:g}")
    if int8_path is not None:
        record["int8"] = compare(
            task, reference, _onnx_outputs(int8_path, batches, output_name), batches, tokenizer.mask_token_id
        )
        record["int8_gates"] = {k: v for k, v in gates.items() if k in record["int8"]}
        for key, minimum in record["int8_gates"].items():
            if not record["int8"][key] >= minimum:
                failures.append(
                    f"int8 {key} = {record['int8'][key]:.4f} < {minimum} (accuracy gate; "
                    f"override with --int8-gate {key}=VALUE or --no-int8-gate)"
                )
    if failures:
        raise ValidationError(
            f"validation against PyTorch failed ({task}, {fp32_path.parent}): " + "; ".join(failures),
            figures=record,
        )
    return record
