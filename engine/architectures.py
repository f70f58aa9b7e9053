"""The architecture table: one row per ``config.json`` ``model_type`` bertrt exports and runs.

Pure data, read by the runtime (inputs, max length), the exporter (fusion, tolerances, messages) and the
test model builders (tokenizer family, config class). Adding an architecture is adding a row here.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

__all__ = ["ARCHITECTURES", "Architecture", "get_architecture", "supported_list", "takes_token_type_ids"]


@dataclass(frozen=True)
class Architecture:
    """What bertrt needs to know about one ``model_type``. The defaults are BERT's: a row states only what
    differs (and its transformers class names)."""

    model_type: str
    #: human name, for messages and the README
    name: str
    _: KW_ONLY
    #: the exported graph takes ``token_type_ids``; None: the config decides (``type_vocab_size > 0``, as
    #: optimum's DeBERTa export does), see :func:`takes_token_type_ids`. The runtime feeds whatever the
    #: graph declares, so this is the exporter's expectation, never a runtime switch.
    token_type_ids: bool | None = True
    #: position ids start at ``padding_idx + 1`` (the RoBERTa family): usable length = positions - offset
    position_offset: int = 0
    #: ``onnxruntime.transformers.optimizer`` model_type; None when no fusion covers the graph
    ort_model_type: str | None = "bert"
    #: the optimizer fuses the embeddings into EmbedLayerNormalization (RoBERTa's position arithmetic blocks it)
    embed_fusion: bool = True
    #: the optimizer fuses one Attention per layer; False: fewer fusions are recorded, not a failure
    attention_fusion: bool = True
    #: "wordpiece", "byte-bpe" or "unigram" (SentencePiece with Metaspace)
    tokenizer_family: str = "wordpiece"
    #: transformers class names (the exporter and the test builders import them by name)
    config_class: str
    tokenizer_class: str
    #: fp32 graph vs PyTorch, max |difference| the export accepts; None: the exporter's default
    #: (``bertrt.export.validate.FP32_ATOL``, 1e-4)
    fp32_tolerance: float | None = None
    #: the PyTorch attention the exporter loads and traces (``from_pretrained(attn_implementation=...)``):
    #: "sdpa" where transformers has it (it traces to the pattern onnxruntime's Attention fusion knows),
    #: "eager" where ``from_pretrained`` refuses sdpa (ELECTRA, DeBERTa, MPNet in transformers 4.57)
    attn_implementation: str = "sdpa"
    #: the exporter folds subgraphs that read only weights into initializers before quantization
    #: (DeBERTa's relative-position projections, computed on every call otherwise; export/fold.py)
    fold_constants: bool = False
    #: the exporter maps each layer's attention, whose scores get additive terms the optimizer's fusion does
    #: not know (MPNet's relative-position bias), onto com.microsoft MultiHeadAttention with those terms as
    #: its ``attention_bias`` (export/mpnet.py); the fusion record counts it as fused attention
    attention_bias_fusion: bool = False
    #: the exporter maps the rotary attention (RoPE glue + sdpa) onto onnxruntime's RotaryEmbedding +
    #: MultiHeadAttention contrib ops and splits the GLU input projection (ModernBERT; export/modernbert.py)
    rotary_attention: bool = False


#: Presets shared by several rows. The RoBERTa family: positions start at ``padding_idx + 1`` (offset 2), no
#: segment ids, and the position arithmetic blocks the embedding fusion.
_ROBERTA_LIKE = {"token_type_ids": False, "position_offset": 2, "embed_fusion": False}
#: Attention that no onnxruntime Attention fusion covers (relative positions, rotary, local windows): only the
#: LayerNorm / Gelu fusions apply.
_UNFUSED = {"embed_fusion": False, "attention_fusion": False}
#: DeBERTa v1 and v2/v3: segment ids when the config has segment types, eager attention (sdpa refused), and the
#: relative-position projections folded into constants at export.
_DEBERTA = {**_UNFUSED, "token_type_ids": None, "attn_implementation": "eager", "fold_constants": True}

ARCHITECTURES: dict[str, Architecture] = {
    row.model_type: row
    for row in (
        Architecture("bert", "BERT", config_class="BertConfig", tokenizer_class="BertTokenizerFast"),
        Architecture(
            "roberta",
            "RoBERTa",
            **_ROBERTA_LIKE,
            tokenizer_family="byte-bpe",
            config_class="RobertaConfig",
            tokenizer_class="RobertaTokenizerFast",
        ),
        Architecture(
            "distilbert",
            "DistilBERT",
            token_type_ids=False,
            config_class="DistilBertConfig",
            tokenizer_class="DistilBertTokenizerFast",
        ),
        Architecture(
            "xlm-roberta",
            "XLM-RoBERTa",
            **_ROBERTA_LIKE,
            tokenizer_family="unigram",
            config_class="XLMRobertaConfig",
            tokenizer_class="XLMRobertaTokenizerFast",
        ),
        Architecture(
            "camembert",
            "CamemBERT",
            **_ROBERTA_LIKE,
            tokenizer_family="unigram",
            config_class="CamembertConfig",
            tokenizer_class="CamembertTokenizerFast",
        ),
        Architecture(
            "electra",
            "ELECTRA",
            config_class="ElectraConfig",
            tokenizer_class="ElectraTokenizerFast",
            attn_implementation="eager",
        ),
        # DeBERTa-v3 checkpoints are model_type deberta-v2 (type_vocab_size 0: no token_type_ids). The
        # disentangled attention (relative-position c2p/p2c terms) matches no onnxruntime Attention fusion.
        # fp32 vs PyTorch: ~1e-6 (2e-6 at deberta-v3-xsmall size).
        Architecture(
            "deberta-v2",
            "DeBERTa-v2/v3",
            **_DEBERTA,
            tokenizer_family="unigram",
            config_class="DebertaV2Config",
            tokenizer_class="DebertaV2TokenizerFast",
        ),
        # DeBERTa v1: its LayerNorm casts to float around the residual, so onnxruntime fuses
        # LayerNormalization but no SkipLayerNormalization, and no Attention (as for v2).
        Architecture(
            "deberta",
            "DeBERTa",
            **_DEBERTA,
            tokenizer_family="byte-bpe",
            config_class="DebertaConfig",
            tokenizer_class="DebertaTokenizerFast",
        ),
        # MPNet computes positions from padding_idx 1 (hard-coded): offset 2 as RoBERTa. Its attention adds a
        # relative-position bucket bias that no onnxruntime Attention fusion covers: the exporter maps it onto
        # MultiHeadAttention with the bias as attention_bias itself.
        Architecture(
            "mpnet",
            "MPNet",
            **{**_ROBERTA_LIKE, **_UNFUSED},
            config_class="MPNetConfig",
            tokenizer_class="MPNetTokenizerFast",
            attn_implementation="eager",
            attention_bias_fusion=True,
        ),
        # ModernBERT: rotary positions (8,192 of them, no offset) and alternating local (sliding-window) and
        # global attention layers; the exporter maps RoPE + attention onto onnxruntime's RotaryEmbedding and
        # MultiHeadAttention (the padding / sliding-window mask as its additive attention_bias).
        Architecture(
            "modernbert",
            "ModernBERT",
            **_UNFUSED,
            token_type_ids=False,
            rotary_attention=True,
            tokenizer_family="byte-bpe",
            config_class="ModernBertConfig",
            tokenizer_class="PreTrainedTokenizerFast",
        ),
        # ALBERT's first residual Add lists the embedding projection first, which hides layer 0's attention
        # from onnxruntime's fusion; bertrt.export.optimize swaps such inputs first (all layers then fuse).
        Architecture(
            "albert",
            "ALBERT",
            tokenizer_family="unigram",
            config_class="AlbertConfig",
            tokenizer_class="AlbertTokenizerFast",
        ),
    )
}


def get_architecture(model_type: str | None) -> Architecture | None:
    """The row for ``model_type``; None when bertrt does not know it (a foreign bundle may still run)."""
    return ARCHITECTURES.get(model_type or "")


def takes_token_type_ids(row: Architecture | None, config) -> bool:
    """Whether the graph exported for ``config`` (a transformers config or a config.json dict) takes
    ``token_type_ids``: the row's answer, or ``type_vocab_size > 0`` where the row leaves it to the config.
    Unknown architectures: True when the config has segment types (the runtime feeds what a graph declares).
    """
    if row is not None and row.token_type_ids is not None:
        return row.token_type_ids
    size = (
        config.get("type_vocab_size") if isinstance(config, dict) else getattr(config, "type_vocab_size", 0)
    )
    return isinstance(size, int) and not isinstance(size, bool) and size > 0


def supported_list() -> str:
    """``BERT (bert), RoBERTa (roberta), ...`` for error messages."""
    return ", ".join(f"{row.name} ({row.model_type})" for row in ARCHITECTURES.values())
