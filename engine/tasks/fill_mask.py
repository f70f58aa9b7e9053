"""fill-mask: the best tokens for each mask token, as transformers' pipeline.

``top_k`` (default 5) predictions per mask; ``targets`` (a token or a list of tokens) restricts the
candidates (a target outside the vocabulary stands for its first token, with a warning). One list of
predictions per text; a text with several masks gives one list per mask (nested), as transformers does.
The post-processing (:func:`mask_positions`, :func:`top_predictions`) is pure numpy: softmax over the
vocabulary at each mask, optional target restriction, top-k, as transformers' FillMaskPipeline.

``bertrt batch``'s ``result``: ``list<list<struct<score: float32, token: int32, token_str: string,
sequence: string>>>``, one list per mask, also when a text has a single mask. ``bertrt tune`` masks the
middle word of each sample text and compares the best tokens; the exporter validates on masked sentences
(top-5 overlap and top-1 agreement at the masks).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..errors import InputError, TaskError
from ..numeric import softmax
from ..tokenize import check_text
from . import figures
from .base import Cli, Encoding, Option, Task, ValidationInputs, check_top_k, positive_int

__all__ = ["MASK_TEXTS", "TASK", "FillMask", "mask_positions", "prediction_type", "top_predictions"]

log = logging.getLogger("bertrt")

#: the exporter's validation sentences; "{mask}" is replaced by the tokenizer's mask token
MASK_TEXTS = (
    "The capital of France is {mask}.",
    "Maria works at {mask} Corp. in Groningen.",
    "I love {mask} and coffee.",
    "The quick brown {mask} jumps over the lazy dog, again and again.",
)


def mask_positions(ids: np.ndarray, mask_token_id: int) -> np.ndarray:
    """Indices of the mask token in one sequence of ids."""
    return np.flatnonzero(np.asarray(ids) == mask_token_id)


def top_predictions(mask_logits: np.ndarray, top_k: int, target_ids: np.ndarray | None = None):
    """``(scores, token_ids)`` of shape (masks, k) for logits of shape (masks, vocab).

    Probabilities are over the full vocabulary (then restricted to ``target_ids`` when given), k is capped
    by the number of targets and the vocabulary size; sorted by descending score.
    """
    probs = softmax(np.asarray(mask_logits, dtype=np.float32), axis=-1)
    candidates = np.arange(probs.shape[-1]) if target_ids is None else np.asarray(target_ids, dtype=np.int64)
    if target_ids is not None:
        probs = probs[:, candidates]
    k = min(int(top_k), probs.shape[-1])
    # argsort of the negated scores, stable: ties keep the lower index first, like torch.topk on CPU.
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    scores = np.take_along_axis(probs, order, axis=-1)
    return scores, candidates[order]


@dataclass(frozen=True)
class _Options:
    top_k: int
    target_ids: np.ndarray | None  # sorted unique candidate ids, None: the whole vocabulary
    mask_id: int


@dataclass(frozen=True)
class _Masked(Encoding):
    masks: list[np.ndarray]  # mask positions per sequence


class FillMask(Task):
    name = "fill-mask"
    auto_class = "AutoModelForMaskedLM"
    output = "logits"
    dims = ("batch", "sequence", "vocabulary")
    gates = MappingProxyType({"accuracy.agreement": 0.9, "invariance.agreement": 0.999})
    int8_gates = MappingProxyType({"top5_overlap": 0.6})
    options = (
        Option(
            "top_k",
            int,
            5,
            help="number of predictions per mask (default 5; a number, not 'all')",
            cli=Cli(parse=positive_int),
        ),
        Option(
            "targets",
            str | list[str],
            None,
            help="candidate tokens to score instead of the vocabulary",
            cli=Cli(nargs="+"),
        ),
    )

    def setup(self, pipe) -> None:
        if pipe.tokenizer.mask_token_id is None:
            raise TaskError(
                f"{pipe.bundle.root}: fill-mask needs a mask token, and the tokenizer defines none"
            )

    def check_options(self, pipe, options: Mapping) -> _Options:
        self.reject_unknown(options)
        top_k = options.get("top_k")
        top_k = 5 if top_k is None else check_top_k(top_k)
        targets = options.get("targets")
        target_ids = None
        if targets is not None:
            target_ids = self._target_ids(pipe, targets)
        return _Options(top_k, target_ids, pipe.tokenizer.mask_token_id)

    @staticmethod
    def _target_ids(pipe, targets) -> np.ndarray:
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
            raise InputError(f"targets must be a str or a list of str, got {targets!r}")
        vocab = pipe.tokenizer.get_vocab()
        ids = []
        for i, target in enumerate(targets):
            check_text(target, f"target at index {i}")
            index = vocab.get(target)
            if index is None:  # transformers: the first token of the target, with a warning
                pieces = pipe.tokenizer.encode_plain(target)
                if not pieces:
                    log.warning(
                        "target %r is not in the vocabulary and tokenizes to nothing; ignored", target
                    )
                    continue
                index = pieces[0]
                log.warning(
                    "target %r is not in the vocabulary; using %r", target, pipe.tokenizer.id_to_token(index)
                )
            rows = pipe.tokenizer.embedding_rows
            if rows is not None and index >= rows:
                raise InputError(
                    f"target {target!r} (id {index}) has no row in the model's embedding (ids 0..{rows - 1})"
                )
            ids.append(index)
        if not ids:
            raise InputError("at least one target must be provided when targets= is passed")
        return np.array(sorted(set(ids)), dtype=np.int64)

    def encode(self, pipe, items: list, opts: _Options) -> _Masked:
        tok = pipe.tokenizer
        encodings = tok.encode_batch(items)
        masks = [mask_positions(enc.ids, opts.mask_id) for enc in encodings]
        missing = [i for i, m in enumerate(masks) if m.size == 0]
        if missing:
            problem = f"no mask token ({tok.mask_token}) (after truncation to {tok.max_length} tokens)"
            raise InputError(
                f"no mask token ({tok.mask_token}) in the input at index(es) "
                f"{', '.join(map(str, missing[:20]))} (after truncation to {tok.max_length} tokens)",
                items=missing,
                problem=problem,
            )
        return _Masked(encodings, masks)

    def collect(self, output: np.ndarray, row: int, seq, opts: _Options) -> np.ndarray:
        return output[row, mask_positions(seq.ids, opts.mask_id)]

    def finish(self, pipe, items: list, encoded: _Masked, collected: list, opts: _Options) -> list:
        tok = pipe.tokenizer
        results = []
        for enc, positions, logits in zip(encoded.sequences, encoded.masks, collected):
            scores, token_ids = top_predictions(logits, opts.top_k, opts.target_ids)
            single_mask = len(positions) == 1
            per_mask = []
            for m, position in enumerate(positions):
                row = []
                for score, token in zip(scores[m].tolist(), token_ids[m].tolist()):
                    filled = enc.ids.copy()
                    filled[position] = token
                    filled = filled[filled != tok.pad_token_id]
                    row.append(
                        {
                            "score": float(score),
                            "token": int(token),
                            "token_str": tok.decode([token]),
                            "sequence": tok.decode(filled, skip_special_tokens=single_mask),
                        }
                    )
                per_mask.append(row)
            results.append(per_mask[0] if single_mask else per_mask)
        return results

    def warm_up_text(self, tokenizer) -> str:
        return super().warm_up_text(tokenizer).replace("Groningen", tokenizer.mask_token)

    def signature(self, result) -> int:
        first = result[0]
        return first[0]["token"] if isinstance(first, list) else first["token"]

    def tune_sample(self, pipe, texts: list[str]) -> list[str]:
        """A text that holds the mask token stays as it is; any other gets its middle word masked."""
        mask, masked = pipe.tokenizer.mask_token, []
        for text in texts:
            if mask in text:
                masked.append(text)
                continue
            words = text.split() or ["x"]
            words[len(words) // 2] = mask
            masked.append(" ".join(words))
        return masked

    def validation_inputs(self, mask_token: str | None) -> ValidationInputs:
        return ValidationInputs(tuple(t.format(mask=mask_token) for t in MASK_TEXTS), pairs=())

    def compare_outputs(self, reference, candidate, batches, mask_id) -> dict:
        out = super().compare_outputs(reference, candidate, batches, mask_id)
        top5, top1 = [], []
        for ref, cand, (_, feed) in zip(reference, candidate, batches):
            where = feed["input_ids"] == mask_id
            top5.append((figures.topk_overlap(ref[where], cand[where], 5), int(where.sum())))
            top1.append((figures.argmax_agreement(ref[where], cand[where]), int(where.sum())))
        n = sum(c for _, c in top5)
        if top5:
            out["top5_overlap"] = sum(v * c for v, c in top5) / n
            out["top1_agreement"] = sum(v * c for v, c in top1) / n
        return out

    def result_spec(self, pipe, options: Mapping):
        import pyarrow as pa

        from ..batch.results import ResultSpec

        return ResultSpec("nested", pa.list_(pa.list_(prediction_type())))


def prediction_type():
    """The Arrow struct of one prediction (built on demand: pyarrow comes with bertrt[batch])."""
    import pyarrow as pa

    return pa.struct(
        [
            ("score", pa.float32()),
            ("token", pa.int32()),
            ("token_str", pa.string()),
            ("sequence", pa.string()),
        ]
    )


TASK = FillMask()
