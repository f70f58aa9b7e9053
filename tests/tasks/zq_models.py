"""Tiny random checkpoints for zero-shot-classification (an NLI head: entailment / neutral / contradiction)
and question-answering, of every architecture row, and their bundles, cached on disk (tests/cache.py)."""

from __future__ import annotations

from pathlib import Path

from tests.builders import _config, _hf_tokenizer

__all__ = ["NLI_LABELS", "build_nli_checkpoint", "build_qa_checkpoint", "zq_bundle", "zq_checkpoint"]

NLI_LABELS = ("entailment", "neutral", "contradiction")
_HEADS = {
    "zero-shot-classification": "AutoModelForSequenceClassification",
    "question-answering": "AutoModelForQuestionAnswering",
}


def _build(arch: str, task: str, out_dir: Path, seed: int = 0) -> Path:
    import torch
    import transformers

    tokenizer = _hf_tokenizer(arch)
    config = _config(arch, len(tokenizer), tokenizer)
    if task == "zero-shot-classification":
        config.id2label = dict(enumerate(NLI_LABELS))
        config.label2id = {v: k for k, v in config.id2label.items()}
    torch.manual_seed(seed)
    model = getattr(transformers, _HEADS[task]).from_config(config).eval()
    with torch.no_grad():  # sharpen the random head: parity compares decisions, not near-ties
        for name, param in model.named_parameters():
            if name.startswith(("classifier", "pre_classifier", "qa_outputs")) and name.endswith("weight"):
                param.mul_(8.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_nli_checkpoint(arch: str, out_dir: Path) -> Path:
    return _build(arch, "zero-shot-classification", out_dir)


def build_qa_checkpoint(arch: str, out_dir: Path) -> Path:
    return _build(arch, "question-answering", out_dir)


def zq_checkpoint(model_cache, arch: str, task: str) -> Path:
    return model_cache.get(f"zq-checkpoint-{arch}-{task}", lambda out: _build(arch, task, out))


def zq_bundle(model_cache, arch: str, task: str, quantize: str = "int8") -> Path:
    from bertrt.export import export_model

    checkpoint = zq_checkpoint(model_cache, arch, task)
    return model_cache.get(
        f"zq-bundle-{arch}-{task}-{quantize}",
        lambda out: export_model(checkpoint, out, task=task, quantize=quantize),
    )
