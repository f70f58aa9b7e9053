"""Graph rewrites (DeBERTa-v3, ModernBERT), measured: int8 and fp32 graphs before / after vs PyTorch fp32,
interleaved.

Raw sessions (the runtime's session options) and the PyTorch model's forward on the same random token
ids (no tokenizer, no post-processing): ``--lengths`` tokens, batch 8 texts/s and batch 1 p50 ms,
``--repeats`` interleaved rounds (rotating order), medians with min-max; then the onnxruntime profile
(op types by node time) of each int8 graph at batch 8. ``before``/``after``: folders holding
``model.onnx`` and ``model.int8.onnx`` (e.g. a bundle exported before the change, and one after).

    python -m benchmarks.deberta_speed --checkpoint DIR --before DIR --after DIR [--lengths 48,128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bertrt.session import DISABLED_OPTIMIZERS, session_options

__all__ = ["main"]

BATCH = 8
THREADS = 2


def _onnx(path: Path):
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(path),
        sess_options=session_options(THREADS),
        providers=["CPUExecutionProvider"],
        disabled_optimizers=DISABLED_OPTIMIZERS,
    )
    names = {i.name for i in session.get_inputs()}
    out = session.get_outputs()[0].name
    return lambda ids, mask: session.run(
        [out], {k: v for k, v in (("input_ids", ids), ("attention_mask", mask)) if k in names}
    )[0]


def _torch(checkpoint: Path):
    import torch
    import transformers

    torch.set_num_threads(THREADS)
    try:  # PyTorch's fastest attention where the class has it (ModernBERT), eager otherwise (DeBERTa-v2)
        model = transformers.AutoModelForTokenClassification.from_pretrained(
            checkpoint, attn_implementation="sdpa"
        ).eval()
    except (ValueError, ImportError):
        model = transformers.AutoModelForTokenClassification.from_pretrained(
            checkpoint, attn_implementation="eager"
        ).eval()

    def run(ids, mask):
        with torch.inference_mode():
            return model(
                input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
            ).logits.numpy()

    return run


def _fmt(values, digits=1) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def measure(systems: dict, length: int, repeats: int, calls: int, vocab: int) -> dict:
    rng = np.random.default_rng(length)
    ids = rng.integers(1000, vocab, (BATCH, length)).astype(np.int64)
    mask = np.ones_like(ids)
    for run in systems.values():
        run(ids, mask)
        run(ids[:1], mask[:1])
    tput = {n: [] for n in systems}
    p50 = {n: [] for n in systems}
    names = list(systems)
    for rep in range(repeats):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            t0 = time.perf_counter()
            systems[name](ids, mask)
            tput[name].append(BATCH / (time.perf_counter() - t0))
            times = []
            for i in range(calls):
                t0 = time.perf_counter()
                systems[name](ids[i % BATCH : i % BATCH + 1], mask[:1])
                times.append(1000.0 * (time.perf_counter() - t0))
            p50[name].append(statistics.median(times))
    return {"texts_per_s": tput, "p50_ms": p50}


def parity(systems: dict, length: int, vocab: int) -> dict:
    rng = np.random.default_rng(7)
    ids = rng.integers(1000, vocab, (4, length)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, length // 2 :] = 0
    ref = systems["pytorch fp32"](ids, mask)
    out = {}
    for name, run in systems.items():
        got = run(ids, mask)
        keep = mask.astype(bool)
        out[name] = float(np.abs(got - ref)[keep].max())
        n = int(mask[1].sum())  # the padded row alone, unpadded: batch invariance
        alone = run(ids[1:2, :n], mask[1:2, :n])[0]
        out[name + " batch1-vs-4"] = float(np.abs(alone - got[1, :n]).max())
    return out


def run_tables(
    checkpoint, folders: dict, lengths: str, repeats: int, calls: int, vocab: int, fp32=False
) -> None:
    """Parity, then per length the interleaved table: each folder's int8 graph (and fp32 with ``fp32``)
    beside PyTorch fp32 on the same random ids."""
    systems = {f"int8 {label}": _onnx(folder / "model.int8.onnx") for label, folder in folders.items()}
    systems["pytorch fp32"] = _torch(checkpoint)
    if fp32:
        systems.update({f"fp32 {label}": _onnx(folder / "model.onnx") for label, folder in folders.items()})
    print(f"load {os.getloadavg()}, {THREADS} threads, batch {BATCH}, {repeats} interleaved rounds")
    print("parity (max |logit diff| vs PyTorch fp32, unpadded tokens):", parity(systems, 48, vocab))
    for length in (int(x) for x in lengths.split(",")):
        res = measure(systems, length, repeats, calls, vocab)
        print(f"\n{length} tokens (load {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
        print("| system | batch-8 texts/s | batch-1 p50 ms | texts/s / PyTorch |")
        print("|---|---:|---:|---:|")
        base = statistics.median(res["texts_per_s"]["pytorch fp32"])
        for name in systems:
            t = res["texts_per_s"][name]
            print(
                f"| {name} | {_fmt(t)} | {_fmt(res['p50_ms'][name], 2)} | {statistics.median(t) / base:.2f}x |"
            )
        sys.stdout.flush()


def print_profiles(folders: dict, lengths: str, vocab: int) -> None:
    """onnxruntime's profile of each folder's int8 graph on one random batch per length: top op types."""
    from benchmarks.arch_bench import profile_graph

    rng = np.random.default_rng(0)
    for length in (int(x) for x in lengths.split(",")):
        ids = rng.integers(1000, vocab, (BATCH, length)).astype(np.int64)
        for label, folder in folders.items():
            prof = profile_graph(
                folder / "model.int8.onnx", {"input_ids": ids, "attention_mask": np.ones_like(ids)}, THREADS
            )
            top = ", ".join(f"{o['op']} {o['share']:.0%} ({o['ms']:.1f} ms)" for o in prof["ops"][:8])
            print(f"\nprofile int8 {label}, {BATCH}x{length}: run {prof['run_ms']:.1f} ms; {top}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.deberta_speed", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, nargs="+", required=True, help="one or more folders")
    parser.add_argument("--lengths", default="48,128")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also the int8 profiles' top ops")
    parser.add_argument("--fp32", action="store_true", help="also the fp32 graphs")
    args = parser.parse_args(argv)
    import json

    vocab = json.loads((args.checkpoint / "config.json").read_text())["vocab_size"]
    folders = {"before": args.before, **{f"after {p.name}": p for p in args.after}}
    run_tables(args.checkpoint, folders, args.lengths, args.repeats, args.calls, vocab, fp32=args.fp32)
    if args.profile:
        print_profiles(folders, args.lengths, vocab)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
