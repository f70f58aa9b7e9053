"""Session fixtures: tiny random BERT / RoBERTa / DistilBERT checkpoints with tokenizers trained here.

Building is cheap (seconds); every model is built once per test session. Models are saved with
``save_pretrained`` (safetensors + fast tokenizer), exactly like a checkpoint folder a user has.
"""

from __future__ import annotations

import inspect
import os
from collections import Counter
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


def _word_counts(tok) -> Counter:
    """The words the tokenizer's own normalizer and pre-tokenizer make of TRAIN_TEXT, counted."""
    counts: Counter = Counter()
    for text in TRAIN_TEXT:
        normalized = tok.normalizer.normalize_str(text) if tok.normalizer is not None else text
        counts.update(word for word, _ in tok.pre_tokenizer.pre_tokenize_str(normalized))
    return counts


def _train_bpe(words: Counter, specials, vocab_size: int, alphabet=(), prefix=None, min_frequency=0):
    """``(vocab, merges)``: the BPE training of ``tokenizers``' BpeTrainer, made deterministic.

    The Rust trainer (also behind WordPieceTrainer) numbers the ``##x`` continuation characters in
    HashMap order, and pair-count ties are broken by those numbers: its vocabulary differs from
    process to process (405-408 tokens here), so the tiny models, and any accuracy figure measured
    on them, did too. This is the same algorithm (specials, the sorted alphabet, the ``prefix`` forms,
    then the most frequent adjacent pair merged until ``vocab_size``, ties to the lowest ids) with
    every order fixed. Without a prefix (byte-level BPE) it gives the Rust trainer's vocab and merges
    for TRAIN_TEXT exactly.
    """
    vocab: dict[str, int] = {}
    for token in specials:
        vocab.setdefault(token, len(vocab))
    for char in sorted(set(alphabet).union(*words)):
        vocab.setdefault(char, len(vocab))
    ordered = sorted(words)
    pieces = [[word[0]] + [(prefix or "") + c for c in word[1:]] for word in ordered]
    if prefix:
        for token in sorted({p for word in pieces for p in word[1:]}):
            vocab.setdefault(token, len(vocab))
    seqs = [[vocab[p] for p in word] for word in pieces]
    counts = [words[w] for w in ordered]
    id_to_token = list(vocab)
    merges = []
    while len(vocab) < vocab_size:
        pairs: Counter = Counter()
        for seq, count in zip(seqs, counts):
            for pair in zip(seq, seq[1:]):
                pairs[pair] += count
        if not pairs:
            break
        (a, b), count = min(pairs.items(), key=lambda item: (-item[1], item[0]))
        if count < max(1, min_frequency):
            break
        left, right = id_to_token[a], id_to_token[b]
        if prefix and right.startswith(prefix):
            right = right[len(prefix) :]
        if left + right not in vocab:
            vocab[left + right] = len(vocab)
            id_to_token.append(left + right)
        new_id = vocab[left + right]
        merges.append((id_to_token[a], id_to_token[b]))
        for seq in seqs:  # merge left to right, non-overlapping
            i = 0
            while i < len(seq) - 1:
                if seq[i] == a and seq[i + 1] == b:
                    seq[i : i + 2] = [new_id]
                i += 1
    return vocab, merges


def _wordpiece_tokenizer(lowercase: bool):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(
        lowercase=lowercase, clean_text=True, handle_chinese_chars=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # What WordPieceTrainer(vocab_size=600, special_tokens=specials, continuing_subword_prefix="##")
    # computes, without its process-to-process variation (see _train_bpe).
    vocab, _ = _train_bpe(_word_counts(tok), specials, vocab_size=600, prefix="##")
    tok.model = models.WordPiece(vocab=vocab, unk_token="[UNK]", continuing_subword_prefix="##")
    tok.add_special_tokens(specials)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tok


def _bytelevel_bpe_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    # ByteLevelBPETokenizer(add_prefix_space=False, trim_offsets=True) trained with vocab_size=700,
    # min_frequency=1 and these specials; _train_bpe gives its exact vocab and merges, always.
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab, merges = _train_bpe(
        _word_counts(tok),
        specials,
        vocab_size=700,
        alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=1,
    )
    tok.model = models.BPE(vocab, merges)
    tok.add_special_tokens(specials)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")),
        ("<s>", tok.token_to_id("<s>")),
        trim_offsets=True,
        add_prefix_space=False,
    )
    return tok


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
