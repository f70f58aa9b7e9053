"""The architecture table: one row per ``config.json`` ``model_type`` bertrt exports and runs.

Pure data, read by the runtime (inputs, max length), the exporter (fusion, tolerances, messages) and the
test model builders (tokenizer family, config class). Adding an architecture is adding a row here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ARCHITECTURES", "Architecture", "get_architecture", "supported_list"]


@dataclass(frozen=True)
class Architecture:
    """What bertrt needs to know about one ``model_type``."""

    model_type: str
    #: human name, for messages and the README
    name: str
    #: the exported graph takes ``token_type_ids``
    token_type_ids: bool
    #: position ids start at ``padding_idx + 1`` (the RoBERTa family): usable length = positions - offset
    position_offset: int
    #: ``onnxruntime.transformers.optimizer`` model_type; None when no fusion covers the graph
    ort_model_type: str | None
    #: the optimizer fuses the embeddings into EmbedLayerNormalization (RoBERTa's position arithmetic blocks it)
    embed_fusion: bool
    #: the optimizer fuses one Attention per layer; False: fewer fusions are recorded, not a failure
    attention_fusion: bool
    #: "wordpiece", "byte-bpe" or "unigram" (SentencePiece with Metaspace)
    tokenizer_family: str
    #: transformers class names (the exporter and the test builders import them by name)
    config_class: str
    tokenizer_class: str
    #: fp32 graph vs PyTorch, max |difference| the export accepts; None: the exporter's default
    #: (``bertrt.export.validate.FP32_ATOL``, 1e-4)
    fp32_tolerance: float | None = None


ARCHITECTURES: dict[str, Architecture] = {
    row.model_type: row
    for row in (
        Architecture(
            "bert",
            "BERT",
            token_type_ids=True,
            position_offset=0,
            ort_model_type="bert",
            embed_fusion=True,
            attention_fusion=True,
            tokenizer_family="wordpiece",
            config_class="BertConfig",
            tokenizer_class="BertTokenizerFast",
        ),
        Architecture(
            "roberta",
            "RoBERTa",
            token_type_ids=False,
            position_offset=2,
            ort_model_type="bert",
            embed_fusion=False,
            attention_fusion=True,
            tokenizer_family="byte-bpe",
            config_class="RobertaConfig",
            tokenizer_class="RobertaTokenizerFast",
        ),
        Architecture(
            "distilbert",
            "DistilBERT",
            token_type_ids=False,
            position_offset=0,
            ort_model_type="bert",
            embed_fusion=True,
            attention_fusion=True,
            tokenizer_family="wordpiece",
            config_class="DistilBertConfig",
            tokenizer_class="DistilBertTokenizerFast",
        ),
    )
}


def get_architecture(model_type: str | None) -> Architecture | None:
    """The row for ``model_type``; None when bertrt does not know it (a foreign bundle may still run)."""
    return ARCHITECTURES.get(model_type or "")


def supported_list() -> str:
    """``BERT (bert), RoBERTa (roberta), ...`` for error messages."""
    return ", ".join(f"{row.name} ({row.model_type})" for row in ARCHITECTURES.values())
