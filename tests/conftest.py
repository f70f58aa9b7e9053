"""Session fixtures: tiny random BERT / RoBERTa / DistilBERT checkpoints with tokenizers trained here.

Building is cheap (seconds); every model is built once per test session. Models are saved with
``save_pretrained`` (safetensors + fast tokenizer), exactly like a checkpoint folder a user has.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest

from bertrt.architectures import ARCHITECTURES
from tests.corpus import TRAIN_TEXT

# Fixtures of each area live in their own plugin module.
pytest_plugins = ["tests.fixtures_export", "tests.fixtures_runtime"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    # Tiny reference models run ~100x slower with torch's default 2 spinning threads on this shared
    # 2-core machine than with one; the reference side of every parity test is single-threaded.
    try:
        import torch
    except ImportError:  # the runtime-only test environment
        return
    torch.set_num_threads(1)


ARCHS = tuple(ARCHITECTURES)  # ("bert", "roberta", "distilbert"): one tiny model per table row
HEAD_TASKS = ("feature-extraction", "fill-mask", "text-classification", "token-classification")
NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
CLS_LABELS = ["negative", "neutral", "positive"]
MAX_POS = 64  # tiny max length so that long texts need windows


def _wordpiece_tokenizer(lowercase: bool):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(
        lowercase=lowercase, clean_text=True, handle_chinese_chars=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(
        vocab_size=600, special_tokens=specials, continuing_subword_prefix="##"
    )
    tok.train_from_iterator(TRAIN_TEXT, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tok


def _bytelevel_bpe_tokenizer():
    from tokenizers import ByteLevelBPETokenizer, processors

    tok = ByteLevelBPETokenizer(add_prefix_space=False, trim_offsets=True)
    tok.train_from_iterator(
        TRAIN_TEXT,
        vocab_size=700,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    inner = tok._tokenizer
    inner.post_processor = processors.RobertaProcessing(
        ("</s>", inner.token_to_id("</s>")),
        ("<s>", inner.token_to_id("<s>")),
        trim_offsets=True,
        add_prefix_space=False,
    )
    return inner


def _wordpiece(arch: str):
    lowercase = arch == "distilbert"  # a cased BERT and an uncased DistilBERT
    specials = {
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    return _wordpiece_tokenizer(lowercase=lowercase), {"do_lower_case": lowercase, **specials}


def _byte_bpe(arch: str):
    specials = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    }
    return _bytelevel_bpe_tokenizer(), specials


#: the architecture table's tokenizer_family -> (trained tokenizers.Tokenizer, transformers wrapper kwargs)
_TOKENIZER_FAMILIES = {"wordpiece": _wordpiece, "byte-bpe": _byte_bpe}


def _hf_tokenizer(arch: str):
    import transformers

    row = ARCHITECTURES[arch]
    tokenizer_object, kwargs = _TOKENIZER_FAMILIES[row.tokenizer_family](arch)
    return getattr(transformers, row.tokenizer_class)(
        tokenizer_object=tokenizer_object, **kwargs, model_max_length=MAX_POS - row.position_offset
    )


# Keyword names some config classes use instead of BertConfig's (beyond their attribute_map).
_CONFIG_ALIASES = {"intermediate_size": "hidden_dim"}  # DistilBertConfig


def _config(arch: str, vocab_size: int, tokenizer):
    """The table row's config class with the tiny sizes, under the names that class takes."""
    import transformers

    row = ARCHITECTURES[arch]
    cls = getattr(transformers, row.config_class)
    accepted = set(inspect.signature(cls.__init__).parameters)
    wanted = {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 48,
        "max_position_embeddings": MAX_POS,
        "type_vocab_size": 2 if row.token_type_ids else 1,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    kwargs = {}
    for name, value in wanted.items():
        for candidate in (name, cls.attribute_map.get(name), _CONFIG_ALIASES.get(name)):
            if candidate in accepted and value is not None:
                kwargs[candidate] = value
                break
    return cls(**kwargs)


def build_tiny_checkpoint(arch: str, task: str, out_dir: Path, seed: int = 0) -> Path:
    """Write a tiny random ``arch`` checkpoint with the head for ``task`` into ``out_dir``."""
    import torch
    import transformers

    from bertrt.tasks import get_task

    tokenizer = _hf_tokenizer(arch)
    config = _config(arch, len(tokenizer), tokenizer)
    if task == "token-classification":
        config.id2label = dict(enumerate(NER_LABELS))
        config.label2id = {v: k for k, v in config.id2label.items()}
    elif task == "text-classification":
        config.id2label = dict(enumerate(CLS_LABELS))
        config.label2id = {v: k for k, v in config.id2label.items()}
    torch.manual_seed(seed)
    model = getattr(transformers, get_task(task).auto_class).from_config(config).eval()
    # Random heads give near-uniform logits, where a 1e-6 difference flips an argmax. Sharpen the
    # classifier so that parity tests compare decisions, not ties.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith(("classifier", "pre_classifier")) and name.endswith("weight"):
                param.mul_(8.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """``tiny_checkpoint(arch, task) -> Path``: a checkpoint folder, built once per session."""
    cache: dict[tuple[str, str], Path] = {}

    def get(arch: str, task: str) -> Path:
        key = (arch, task)
        if key not in cache:
            cache[key] = build_tiny_checkpoint(arch, task, tmp_path_factory.mktemp(f"ckpt-{arch}-{task}"))
        return cache[key]

    return get
