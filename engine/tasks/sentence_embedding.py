"""sentence-embedding: what sentence-transformers' ``SentenceTransformer.encode`` returns.

The bundle's sentence-transformers settings (:class:`bertrt.bundle.SentenceTransformers`, recorded by the
exporter from ``modules.json`` and the module configs) say how the token vectors become one vector: the
Pooling modes (``cls``, ``mean``, ``max``, ``mean_sqrt_len_tokens``, ``weightedmean``, ``lasttoken``;
several are concatenated; ``include_prompt=False`` leaves the prompt's tokens out), a Normalize module,
``max_seq_length`` (texts are cut there, not at the tokenizer's longer limit), ``prompts`` and
``default_prompt_name``. A bundle without settings (a plain transformers checkpoint) is mean-pooled, as
sentence-transformers pools it.

Options, as ``encode`` takes them: ``prompt_name`` (one of the bundle's prompts), ``prompt`` (a literal
prefix; it wins over ``prompt_name``, as in sentence-transformers), ``normalize_embeddings`` (unit length,
after ``truncate_dim``) and ``truncate_dim`` (Matryoshka: the first dimensions). A str gives one (dim,)
float32 vector, a list a (n, dim) float32 array.

Dense modules after the pooling need their weights in the graph: the exporter (``bertrt.export.st_dense``)
appends the pooling and the Dense layers to the graph as a second output :data:`DENSE_OUTPUT`, which the
task reads when the bundle's settings have Dense layers (Normalize and ``truncate_dim`` still in numpy); a
bundle whose graph lacks that output is refused when the pipeline is built (the embeddings would be
silently wrong).

The pooling is pure numpy (:func:`pool`), mirroring sentence-transformers' padded forward.
``bertrt batch``'s ``result``: ``fixed_size_list<float32>[dim]``; ``bertrt tune`` and the exporter compare
cosines.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..errors import InputError, TaskError
from . import figures
from .base import Cli, Encoding, Option, Task, positive_int

__all__ = ["DENSE_OUTPUT", "POOLING_MODES", "TASK", "SentenceEmbedding", "Settings", "pool", "settings_of"]

log = logging.getLogger("bertrt")

#: the graph output of a checkpoint with Dense modules: pooled and projected, (batch, out_features)
DENSE_OUTPUT = "sentence_embedding"
#: sentence-transformers' pooling modes (``Pooling.POOLING_MODES``)
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# the names older exports recorded (``pooling_mode_*`` keys without prefix and suffix)
_ALIASES = {"mean_sqrt_len": "mean_sqrt_len_tokens", "cls_token": "cls", "mean_tokens": "mean"}


def _pool_one(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """(batch, tokens, dim) float32 and a (batch, tokens) float32 0/1 mask -> (batch, dim)."""
    mask3 = mask[..., None]
    if mode == "cls":  # the first token the mask keeps (index 0 when nothing is masked out)
        first = np.argmax(mask > 0, axis=1)
        return hidden[np.arange(len(hidden)), first]
    if mode == "max":
        return np.where(mask3 > 0, hidden, -np.inf).max(axis=1).astype(np.float32)
    if mode in ("mean", "mean_sqrt_len_tokens"):
        total = (hidden * mask3).sum(axis=1)
        count = np.clip(mask3.sum(axis=1), 1e-9, None)
        return total / (count if mode == "mean" else np.sqrt(count))
    if mode == "weightedmean":
        weights = mask3 * np.arange(1, hidden.shape[1] + 1, dtype=np.float32)[None, :, None]
        return (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    if mode == "lasttoken":  # the last token the mask keeps (the last position when none is kept)
        tokens = mask.shape[1]
        last = tokens - 1 - np.argmax(mask[:, ::-1] > 0, axis=1)
        last = np.where(mask.max(axis=1) > 0, last, tokens - 1)
        return (hidden * mask3)[np.arange(len(hidden)), last]
    raise ValueError(f"unknown pooling mode {mode!r}; expected one of {', '.join(POOLING_MODES)}")


def pool(hidden: np.ndarray, mask: np.ndarray, modes: tuple[str, ...] = ("mean",)) -> np.ndarray:
    """Token vectors (batch, tokens, dim) and a (batch, tokens) 0/1 mask -> (batch, len(modes) * dim)
    float32: each mode's vector, concatenated in order, as sentence-transformers' Pooling computes them."""
    hidden = np.asarray(hidden, dtype=np.float32)
    mask = np.asarray(mask, dtype=np.float32)
    if hidden.ndim != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"pool needs (batch, tokens, dim) and (batch, tokens), got {hidden.shape}, {mask.shape}"
        )
    vectors = [_pool_one(hidden, mask, _ALIASES.get(m, m)) for m in modes]
    return np.concatenate(vectors, axis=-1).astype(np.float32, copy=False)


def _l2(x: np.ndarray) -> np.ndarray:
    """Unit length along the last axis, as ``torch.nn.functional.normalize`` (norms clipped at 1e-12)."""
    return (x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)).astype(np.float32)


@dataclass(frozen=True)
class Settings:
    """How this pipeline embeds (``pipe.task_state``): from the bundle's sentence-transformers record, or
    sentence-transformers' defaults for a plain checkpoint (mean pooling, the bundle's max length)."""

    pooling: tuple[str, ...]
    include_prompt: bool
    normalize: bool
    max_length: int
    prompts: Mapping[str, str]
    default_prompt_name: str | None
    #: template special-token ids (a prompt's trailing one is not part of the prompt's length)
    special_ids: frozenset[int]
    #: the graph pools and applies Dense layers: the task reads :data:`DENSE_OUTPUT`
    dense: bool = False


def settings_of(bundle, max_length: int, special_ids=(), output_names=()) -> Settings:
    """The :class:`Settings` of ``bundle`` for a pipeline cut at ``max_length`` on a graph with
    ``output_names``; TaskError for what the task cannot compute (an unknown pooling mode, Dense layers
    without their graph output)."""
    st = bundle.sentence_transformers
    if st is None:
        return Settings(
            ("mean",), True, False, max_length, MappingProxyType({}), None, frozenset(special_ids)
        )
    modes = tuple(_ALIASES.get(m, m) for m in (st.pooling or ("mean",)))
    unknown = [m for m in modes if m not in POOLING_MODES]
    if unknown:
        raise TaskError(
            f"{bundle.root}: sentence-transformers pooling {', '.join(unknown)} is not one of "
            f"{', '.join(POOLING_MODES)}"
        )
    if st.dense and DENSE_OUTPUT not in output_names:
        raise TaskError(
            f"{bundle.root}: the checkpoint has {len(st.dense)} Dense module(s) after its pooling, whose "
            f"weights this bundle's graph does not carry (no {DENSE_OUTPUT!r} output; export it again); "
            "its sentence embeddings cannot be computed"
        )
    length = min(max_length, st.max_seq_length) if st.max_seq_length else max_length
    return Settings(
        modes,
        st.include_prompt,
        st.normalize,
        length,
        MappingProxyType(dict(st.prompts)),
        st.default_prompt_name,
        frozenset(special_ids),
        bool(st.dense),
    )


@dataclass(frozen=True)
class _Options:
    prompt: str | None
    #: tokens of the prompt left out of the pooling (include_prompt=False); None: none left out
    prompt_length: int | None
    normalize_embeddings: bool
    truncate_dim: int | None
    #: the pooling modes (the pipeline's settings: :meth:`Task.collect` sees no pipeline)
    pooling: tuple[str, ...] = ("mean",)
    #: the output is the graph's pooled and projected :data:`DENSE_OUTPUT`
    dense: bool = False


class SentenceEmbedding(figures.CosineFigures, Task):
    name = "sentence-embedding"
    auto_class = "AutoModel"
    export_as = "feature-extraction"  # the encoder's token vectors: optimum's feature-extraction graph
    output = "last_hidden_state"
    dims = ("batch", "sequence", "hidden")
    reference_library = "sentence-transformers"  # bertrt bench: SentenceTransformer.encode
    export_head = "bertrt.export.st_dense"  # Dense modules: pooling and Dense layers in the graph
    options = (
        Option("prompt_name", str | None, None, help="one of the model's prompts, put before every text"),
        Option(
            "prompt",
            str | None,
            None,
            help="a literal prompt put before every text (wins over --prompt-name)",
        ),
        Option(
            "normalize_embeddings", bool, False, help="scale the vectors to unit length", cli=Cli(flag=True)
        ),
        Option(
            "truncate_dim",
            int | None,
            None,
            help="keep the first N dimensions (Matryoshka)",
            cli=Cli(parse=positive_int),
        ),
    )

    def setup(self, pipe) -> Settings:
        settings = settings_of(
            pipe.bundle, pipe.max_length, pipe.tokenizer.encode_plain_specials(), pipe.session.output_names
        )
        if settings.dense:  # the graph pools and projects: read its sentence_embedding output
            pipe.session.select_output(DENSE_OUTPUT)
        return settings

    def max_input_length(self, pipe) -> int:
        """The longest input this pipeline embeds (``max_seq_length`` when the checkpoint sets one)."""
        return pipe.task_state.max_length

    def check_options(self, pipe, options: Mapping) -> _Options:
        self.reject_unknown(options)
        settings: Settings = pipe.task_state
        prompt, name = options.get("prompt"), options.get("prompt_name")
        for key, value in (("prompt", prompt), ("prompt_name", name)):
            if value is not None and not isinstance(value, str):
                raise InputError(f"{key} must be a str or None, got {value!r}")
        if prompt is None:
            if name is not None:
                if name not in settings.prompts:
                    known = ", ".join(settings.prompts) or "none"
                    raise InputError(f"prompt_name {name!r} is not one of the model's prompts ({known})")
                prompt = settings.prompts[name]
            elif settings.default_prompt_name is not None:
                prompt = settings.prompts.get(settings.default_prompt_name)
        elif name is not None:
            log.warning("sentence-embedding: both prompt and prompt_name given; prompt_name is ignored")
        normalize = options.get("normalize_embeddings", False)
        if not isinstance(normalize, bool):
            raise InputError(f"normalize_embeddings must be True or False, got {normalize!r}")
        dim = options.get("truncate_dim")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0):
            raise InputError(f"truncate_dim must be a positive int or None, got {dim!r}")
        length = None
        if prompt and not settings.include_prompt:
            ids = pipe.tokenizer.encode_batch([prompt], max_length=settings.max_length)[0].ids
            length = len(ids) - (1 if len(ids) and int(ids[-1]) in settings.special_ids else 0)
        dim = None if dim is None else int(dim)
        if settings.dense and length:
            raise InputError(
                "this model's graph pools its Dense modules' input itself: a prompt cannot be left out "
                "of the pooling (include_prompt=False)"
            )
        return _Options(prompt or None, length, normalize, dim, settings.pooling, settings.dense)

    def encode(self, pipe, items: list, opts: _Options) -> Encoding:
        texts = [opts.prompt + t for t in items] if opts.prompt else items
        return Encoding(pipe.tokenizer.encode_batch(texts, max_length=pipe.task_state.max_length))

    def collect(self, output: np.ndarray, row: int, seq, opts: _Options) -> np.ndarray:
        if opts.dense:  # (batch, out_features): pooled and projected in the graph
            return np.asarray(output[row], dtype=np.float32)
        tokens = output[row, : len(seq)].astype(np.float32, copy=False)
        mask = np.ones((1, len(seq)), dtype=np.float32)
        if opts.prompt_length:
            mask[:, : opts.prompt_length] = 0
        return pool(tokens[None], mask, opts.pooling)[0]

    def finish(self, pipe, items: list, encoded: Encoding, collected: list, opts: _Options) -> list:
        settings: Settings = pipe.task_state
        results = []
        for vec in collected:
            if settings.normalize:
                vec = _l2(vec)
            if opts.truncate_dim is not None:
                vec = vec[: opts.truncate_dim]
            if opts.normalize_embeddings:
                vec = _l2(vec)
            results.append(np.ascontiguousarray(vec, dtype=np.float32))
        return results

    def shape(self, results: list, single: bool, inputs, options: Mapping):
        if single:
            return results[0]
        if not results:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack(results).astype(np.float32, copy=False)

    def result_spec(self, pipe, options: Mapping):
        from ..batch.results import pooled_spec

        return pooled_spec(np.asarray(pipe([pipe.warm_up_text], **options)[0]).shape[-1])


TASK = SentenceEmbedding()
