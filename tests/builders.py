"""Tiny random checkpoints of every architecture-table row, with tokenizers trained here.

:func:`build_tiny_checkpoint` writes a model with ``save_pretrained`` (safetensors + fast tokenizer),
exactly like a checkpoint folder a user has; the fixtures (``tiny_checkpoint`` in conftest.py) cache
them on disk (tests/cache.py). The constants are the ones tests compare against.
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
from pathlib import Path

from bertrt.architectures import ARCHITECTURES
from tests.corpus import TRAIN_TEXT

__all__ = [
    "ARCHS",
    "CLS_LABELS",
    "HEAD_TASKS",
    "MAX_POS",
    "NER_LABELS",
    "TOKENIZER_FAMILIES",
    "build_tiny_checkpoint",
    "wordpiece_tokenizer",
]

ARCHS = tuple(ARCHITECTURES)  # one tiny model per table row
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


_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_BERT_TEMPLATE = ("[CLS]:0 $A:0 [SEP]:0", "[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1")


def wordpiece_tokenizer(lowercase: bool, specials=None, appended=(), template=_BERT_TEMPLATE):
    """BERT's WordPiece; ``specials`` first in the vocabulary, ``appended`` ones after it (MPNet's
    ``<mask>``), ``template`` the (single, pair) post-processor whose first/last tokens are CLS/SEP."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(
        lowercase=lowercase, clean_text=True, handle_chinese_chars=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    specials = list(specials or _BERT_SPECIALS)
    # What WordPieceTrainer(vocab_size=600, special_tokens=specials, continuing_subword_prefix="##")
    # computes, without its process-to-process variation (see _train_bpe).
    vocab, _ = _train_bpe(_word_counts(tok), specials, vocab_size=600, prefix="##")
    tok.model = models.WordPiece(vocab=vocab, unk_token="[UNK]", continuing_subword_prefix="##")
    tok.add_special_tokens(specials + list(appended))
    tok.post_processor = _template(tok, *template)
    return tok


def _template(tok, single: str, pair: str):
    """TemplateProcessing of ``single``/``pair``, its special tokens' ids from ``tok``."""
    from tokenizers import processors

    names = dict.fromkeys(p.split(":")[0] for p in pair.split() if not p.startswith("$"))
    return processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(t, tok.token_to_id(t)) for t in names]
    )


def _bytelevel_bpe_tokenizer(layout: str = "roberta"):
    """Byte-level BPE. ``layout``: "roberta" (``<s> A </s></s> B </s>``, RobertaProcessing trimming the
    offsets), "modernbert" (``[CLS] A [SEP] B [SEP]`` all type 0, the specials after the vocabulary, as
    in ModernBERT's OLMo tokenizer) or "deberta" (the specials first, ``[MASK]`` last, B typed 1); the
    last two have a plain TemplateProcessing, so a ``Ġword`` piece's offsets include its space."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    # ByteLevelBPETokenizer(add_prefix_space=False, trim_offsets=True) trained with vocab_size=700,
    # min_frequency=1 and these specials; _train_bpe gives its exact vocab and merges, always.
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials, appended = {
        "roberta": (["<s>", "<pad>", "</s>", "<unk>", "<mask>"], []),
        "modernbert": ([], ["[UNK]", "[CLS]", "[SEP]", "[PAD]"]),
        "deberta": (["[PAD]", "[CLS]", "[SEP]", "[UNK]"], []),
    }[layout]
    vocab, merges = _train_bpe(
        _word_counts(tok),
        specials,
        vocab_size=690 if layout == "modernbert" else 700,
        alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=1,
    )
    tok.model = models.BPE(vocab, merges)
    tok.add_special_tokens(specials + appended)
    if layout != "roberta":
        # the mask eats the space before it (lstrip), as in the real tokenizer.json files
        tok.add_special_tokens([AddedToken("[MASK]", lstrip=True, normalized=False, special=True)])
        second = "$B:0 [SEP]:0" if layout == "modernbert" else "$B:1 [SEP]:1"
        tok.post_processor = _template(tok, "[CLS]:0 $A:0 [SEP]:0", f"[CLS]:0 $A:0 [SEP]:0 {second}")
        return tok
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")),
        ("<s>", tok.token_to_id("<s>")),
        trim_offsets=True,
        add_prefix_space=False,
    )
    return tok


def _unigram_tokenizer(specials, unk: str, normalizer: str, appended=(), template=_BERT_TEMPLATE):
    """SentencePiece-style Unigram with Metaspace ``▁`` pieces, as transformers' SpmConverter writes it.

    ``tokenizers``' UnigramTrainer is not deterministic (its vocabulary and scores change from process
    to process), so the model is built from a fixed vocabulary instead: the pieces are the deterministic
    BPE vocabulary (:func:`_train_bpe`, no prefix) of the Metaspace words of TRAIN_TEXT, each scored by
    the log of its relative frequency as a substring of those words (longer, frequent pieces win the
    Viterbi segmentation, as in a trained model). ``normalizer``: "spm" (the converters' default,
    NFKC + runs of spaces to ``▁``, with the Metaspace pre-tokenizer alone), "hub-spm" (the older hub
    tokenizer.json layout, WhitespaceSplit + Metaspace: offsets exclude the space), "deberta" (Strip,
    NFKC, runs of spaces to one) or "albert" (quotes, NFKD, accents stripped, lowercase, NFKC, spaces).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    metaspace = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    steps = {
        "spm": [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), "▁")],
        "hub-spm": [normalizers.NFKC()],
        "deberta": [normalizers.Strip(), normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")],
        "albert": [
            normalizers.Replace("``", '"'),
            normalizers.Replace("''", '"'),
            normalizers.NFKD(),
            normalizers.StripAccents(),
            normalizers.Lowercase(),
            normalizers.NFKC(),
            normalizers.Replace(Regex(" {2,}"), " "),
        ],
    }[normalizer]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), metaspace])
        if normalizer == "hub-spm"
        else metaspace
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    words = _word_counts(tok)
    pieces, _ = _train_bpe(words, [], vocab_size=420 - len(specials))
    total = sum(len(word) * count for word, count in words.items())
    scored = [(t, 0.0) for t in specials]
    for piece in pieces:
        frequency = sum(word.count(piece) * count for word, count in words.items())
        scored.append((piece, math.log(frequency / total)))
    tok.model = models.Unigram(scored, unk_id=list(specials).index(unk), byte_fallback=False)
    tok.add_special_tokens(list(specials) + list(appended))
    tok.post_processor = _template(tok, *template)
    return tok


_XLMR_TEMPLATE = ("<s>:0 $A:0 </s>:0", "<s>:0 $A:0 </s>:0 </s>:0 $B:0 </s>:0")  # every type id 0
_ROBERTA_SPECIALS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}
_BERT_NAMES = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


def _mask_lstrip(token: str):
    from tokenizers import AddedToken

    return AddedToken(token, lstrip=True, rstrip=False, normalized=False)


def _wordpiece(arch: str):
    if arch == "mpnet":  # MPNetConverter: BERT's WordPiece, RoBERTa's specials (<pad> must be id 1)
        specials = {**_ROBERTA_SPECIALS, "unk_token": "[UNK]"}
        tok = wordpiece_tokenizer(
            True,
            ["<s>", "<pad>", "</s>", "[UNK]"],
            appended=["<mask>"],
            template=("<s>:0 $A:0 </s>:0", "<s>:0 $A:0 </s>:0 </s>:0 $B:1 </s>:1"),
        )
        return tok, {"do_lower_case": True, **specials}
    lowercase = arch != "bert"  # a cased BERT; uncased DistilBERT and ELECTRA
    return wordpiece_tokenizer(lowercase=lowercase), {"do_lower_case": lowercase, **_BERT_NAMES}


def _byte_bpe(arch: str):
    if arch == "roberta":
        return _bytelevel_bpe_tokenizer(), _ROBERTA_SPECIALS
    specials = {
        **_BERT_NAMES,
        "bos_token": "[CLS]",
        "eos_token": "[SEP]",
        "mask_token": _mask_lstrip("[MASK]"),
    }
    if arch == "modernbert":  # PreTrainedTokenizerFast, as the real checkpoint: name the graph's inputs
        extra = {"model_input_names": ["input_ids", "attention_mask"], "clean_up_tokenization_spaces": True}
        return _bytelevel_bpe_tokenizer("modernbert"), {**specials, **extra}
    return _bytelevel_bpe_tokenizer("deberta"), {**specials, "add_prefix_space": False}


def _unigram(arch: str):
    if arch == "albert":  # albert-base: <pad> <unk> [CLS] [SEP] [MASK] = 0..4, lowercased, no accents
        tok = _unigram_tokenizer(["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"], "<unk>", "albert")
        names = {
            **_BERT_NAMES,
            "unk_token": "<unk>",
            "pad_token": "<pad>",
            "mask_token": _mask_lstrip("[MASK]"),
        }
        return tok, {
            "do_lower_case": True,
            "keep_accents": False,
            "bos_token": "[CLS]",
            "eos_token": "[SEP]",
            **names,
        }
    if arch == "deberta-v2":  # deberta-v3: [PAD] [CLS] [SEP] [UNK] = 0..3, [MASK] after the vocabulary
        tok = _unigram_tokenizer(
            ["[PAD]", "[CLS]", "[SEP]", "[UNK]"], "[UNK]", "deberta", appended=["[MASK]"]
        )
        return tok, {"do_lower_case": False, "bos_token": "[CLS]", "eos_token": "[SEP]", **_BERT_NAMES}
    if arch == "camembert":  # camembert-base: <s>/</s> are not ids 0/2 (those are the unused ...NOTUSED)
        unused = ["<s>NOTUSED", "</s>NOTUSED"]
        specials = ["<s>NOTUSED", "<pad>", "</s>NOTUSED", "<unk>", "<s>", "</s>"]
        tok = _unigram_tokenizer(specials, "<unk>", "spm", appended=["<mask>"], template=_XLMR_TEMPLATE)
        return tok, {**_ROBERTA_SPECIALS, "additional_special_tokens": unused}
    # xlm-roberta: the hub's tokenizer.json layout (WhitespaceSplit + Metaspace); <mask> last
    tok = _unigram_tokenizer(
        ["<s>", "<pad>", "</s>", "<unk>"], "<unk>", "hub-spm", appended=["<mask>"], template=_XLMR_TEMPLATE
    )
    return tok, _ROBERTA_SPECIALS


#: the architecture table's tokenizer_family -> (trained tokenizers.Tokenizer, transformers wrapper kwargs)
TOKENIZER_FAMILIES = {"wordpiece": _wordpiece, "byte-bpe": _byte_bpe, "unigram": _unigram}


def _hf_tokenizer(arch: str):
    import transformers

    row = ARCHITECTURES[arch]
    tokenizer_object, kwargs = TOKENIZER_FAMILIES[row.tokenizer_family](arch)
    return getattr(transformers, row.tokenizer_class)(
        tokenizer_object=tokenizer_object, **kwargs, model_max_length=MAX_POS - row.position_offset
    )


# Keyword names some config classes use instead of BertConfig's (beyond their attribute_map).
_CONFIG_ALIASES = {"intermediate_size": "hidden_dim"}  # DistilBertConfig

#: per-architecture config settings beyond the shared tiny sizes (the real checkpoints' where they matter)
_CONFIG_EXTRAS = {
    "electra": {"embedding_size": 16},  # < hidden: the embeddings_project layer is in the graph
    "albert": {"embedding_size": 16, "hidden_act": "gelu_new", "num_hidden_groups": 1, "inner_group_num": 1},
    # deberta-v3's settings; 16 buckets (real: 256) so 64-token windows reach the log-bucket branch
    "deberta-v2": {
        "relative_attention": True,
        "max_relative_positions": -1,
        "position_buckets": 16,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "pos_att_type": ["p2c", "c2p"],
        "position_biased_input": False,
        "layer_norm_eps": 1e-7,
        "hidden_act": "gelu",
    },
    "deberta": {
        "relative_attention": True,
        "max_relative_positions": -1,
        "pos_att_type": ["c2p", "p2c"],
        "position_biased_input": False,
        "layer_norm_eps": 1e-7,
    },
    "mpnet": {"relative_attention_num_buckets": 32},
    # 8,192 rotary positions as the real model (the tokenizer's 64 sets the tiny max length); every 2nd
    # layer global, an 8-token local window (real: 3rd, 128) so that it matters on short texts
    "modernbert": {
        "max_position_embeddings": 8192,
        "global_attn_every_n_layers": 2,
        "local_attention": 8,
        "reference_compile": False,
    },
}


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
        # the row's None: the config decides, and DeBERTa-v3's has no segment types
        "type_vocab_size": {True: 2, False: 1, None: 0}[row.token_type_ids],
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "cls_token_id": tokenizer.cls_token_id,
        "sep_token_id": tokenizer.sep_token_id,
    }
    kwargs = {}
    for name, value in wanted.items():
        for candidate in (name, cls.attribute_map.get(name), _CONFIG_ALIASES.get(name)):
            if candidate in accepted and value is not None:
                kwargs[candidate] = value
                break
    return cls(**{**kwargs, **_CONFIG_EXTRAS.get(arch, {})})


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
