"""The benchmark report: target checks, Markdown, JSON and the two plots (pure functions of the result).

Targets (issue 11; issue 4's were 4x, 2x and 1/3) are ratios of measured figures, each marked
met/missed; none is ever tuned:

* NER end to end: bertrt int8 >= 6x the PyTorch pipeline and >= 2.5x the best peer pipeline (Optimum
  int8, optimum-intel; texts/s, each system at its own best batch size);
* engine overhead <= 5% over the raw onnxruntime session on the same batches (bertrt int8 at its best
  batch size vs the raw session at that batch size; every batch size is in the table);
* batch-1 p50 latency <= 1/4 of PyTorch's;
* cold start <= 1/5 of transformers+torch; runtime install <= 1/5 of torch+transformers;
* int8 accuracy within 1.0 point of fp32 (from the eval engineer's eval.json, when present).

Peers (out-of-process systems) get a row that says why when they could not run, and a line with their
answers' agreement with the reference. With a GEMM peak measurement (``result["gemm_peak"]``, from
:mod:`benchmarks.gemm_peak`) each workload gets a "fraction of measured GEMM peak" table
(:func:`gemm_fractions`).
"""

from __future__ import annotations

import json
from pathlib import Path

from bertrt.evaluate import int8_targets

__all__ = ["gemm_fractions", "plot_latency", "plot_throughput", "render_markdown", "targets", "write"]

TARGET_WORKLOAD = "ner"


def _best(throughput: dict, system: str) -> tuple[str, float] | None:
    per_bs = throughput.get(system)
    if not per_bs:
        return None
    bs, summary = max(per_bs.items(), key=lambda kv: kv[1]["median"])
    return bs, summary["median"]


def _check(name: str, value: float | None, op: str, limit: float, detail: str) -> dict:
    if value is None:
        return {
            "target": name,
            "value": None,
            "limit": limit,
            "op": op,
            "met": None,
            "detail": detail + " (not measured)",
        }
    met = value >= limit if op == ">=" else value <= limit
    return {
        "target": name,
        "value": round(value, 4),
        "limit": limit,
        "op": op,
        "met": bool(met),
        "detail": detail,
    }


def targets(result: dict) -> list[dict]:
    """The issue's targets, computed from ``result``; ``met`` is None when a figure is missing."""
    checks = []
    wl = result["workloads"].get(TARGET_WORKLOAD) or next(iter(result["workloads"].values()), None)
    if wl is not None:
        tp = wl["throughput"]
        mine, torch, optimum = _best(tp, "bertrt-int8"), _best(tp, "pytorch"), _best(tp, "optimum-int8")
        ratio = mine[1] / torch[1] if mine and torch else None
        checks.append(
            _check(
                f"{wl['workload']['name']}: bertrt int8 / PyTorch pipeline (texts/s, best batch each)",
                ratio,
                ">=",
                6.0,
                f"bertrt int8 {mine[1]:.1f}/s at bs {mine[0]}, PyTorch {torch[1]:.1f}/s at bs {torch[0]}"
                if mine and torch
                else "",
            )
        )
        ratio = mine[1] / optimum[1] if mine and optimum else None
        checks.append(
            _check(
                f"{wl['workload']['name']}: bertrt int8 / Optimum int8 pipeline (texts/s, best batch each)",
                ratio,
                ">=",
                2.0,
                f"Optimum int8 {optimum[1]:.1f}/s at bs {optimum[0]}" if optimum else "",
            )
        )
        raw = tp.get("ort-raw")
        if mine and raw:
            overhead = raw[mine[0]]["median"] / mine[1] - 1.0  # time ratio - 1 (throughput inverted)
            checks.append(
                _check(
                    f"{wl['workload']['name']}: engine overhead over the raw session (same batches)",
                    overhead,
                    "<=",
                    0.05,
                    f"at bs {mine[0]}: raw {raw[mine[0]]['median']:.1f}/s vs "
                    f"bertrt {mine[1]:.1f}/s; the raw session excludes tokenization and "
                    f"post-processing",
                )
            )
        lat = wl.get("latency_bs1", {})
        if "bertrt-int8" in lat and "pytorch" in lat:
            checks.append(
                _check(
                    f"{wl['workload']['name']}: batch-1 p50 latency bertrt int8 / PyTorch",
                    lat["bertrt-int8"]["p50_ms"] / lat["pytorch"]["p50_ms"],
                    "<=",
                    1 / 4,
                    f"{lat['bertrt-int8']['p50_ms']:.2f} ms vs {lat['pytorch']['p50_ms']:.2f} ms",
                )
            )
    probes = result.get("probes")
    if probes and {"bertrt-int8", "pytorch"} <= set(probes["cold_start_s"]):
        cs = probes["cold_start_s"]
        checks.append(
            _check(
                "cold start bertrt int8 / transformers+torch (median, new process to first result)",
                cs["bertrt-int8"]["median"] / cs["pytorch"]["median"],
                "<=",
                0.2,
                f"{cs['bertrt-int8']['median']:.2f} s vs {cs['pytorch']['median']:.2f} s",
            )
        )
    inst = result.get("installed")
    if inst:
        checks.append(
            _check(
                "installed size: runtime closure / torch+transformers closure",
                inst["runtime"]["total_bytes"] / inst["reference"]["total_bytes"],
                "<=",
                0.2,
                f"{inst['runtime']['total_bytes'] / 1e6:.0f} MB vs "
                f"{inst['reference']['total_bytes'] / 1e6:.0f} MB",
            )
        )
    checks.extend(_accuracy_checks(result.get("eval")))
    return checks


def _accuracy_checks(ev: dict | None) -> list[dict]:
    if not ev:
        return [
            {
                "target": "int8 accuracy within 1.0 point of fp32 (WNUT-16 F1, sentiment accuracy)",
                "value": None,
                "limit": 1.0,
                "op": "<=",
                "met": None,
                "detail": "no eval.json next to the report (bertrt eval or python -m benchmarks.eval_report "
                "report writes it)",
            }
        ]
    rows = []
    for row in int8_targets(ev.get("evaluations", [])):
        rows.append(
            {
                "target": f"int8 {row['figure']} within {row['tolerance']} of fp32: {row['dataset']}",
                "value": abs(row["delta"]),
                "limit": row["tolerance"],
                "op": "<=",
                "met": bool(row["met"]),
                "detail": f"fp32 {row['fp32']:.2f}, int8 {row['int8']:.2f} (from eval.json)",
            }
        )
    return rows


# ------------------------------------------------------------------------------------------- text


def _mb(n) -> str:
    return "–" if n is None else f"{n / 1e6:.1f} MB"


def _spread(s: dict, fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"


def gemm_fractions(result: dict, wl: dict) -> list[dict]:
    """Per measured system: its best texts/s, the encoder's matmul GOP per text on the padded batches of
    that batch size, the GOP/s that makes, and its fraction of the measured GEMM peak of its precision
    (int8 systems vs the int8 peak, fp32 vs fp32, a peer at the precision it reports)."""
    from benchmarks.gemm_peak import fraction_of_peak, peak_precision

    peaks = (result.get("gemm_peak") or {}).get("peaks") or {}
    gop = wl.get("gop_per_pass")
    if not peaks or not gop:
        return []
    rows = []
    for s in result["systems"]:
        best = _best(wl["throughput"], s)
        if best is None or best[0] not in gop:
            continue
        info = (wl.get("peers") or {}).get(s, {}).get("info", {})
        precision = peak_precision(s, info.get("inference_precision"))
        peak = peaks.get(precision)
        if peak is None:
            continue
        per_text = gop[best[0]] / max(wl["n_texts"], 1)
        rows.append(
            {
                "system": s,
                "precision": precision,
                "batch_size": best[0],
                "texts_per_s": best[1],
                "gop_per_text": per_text,
                "gops": best[1] * per_text,
                "peak_gops": peak["gops"],
                "fraction": fraction_of_peak(best[1], per_text, peak["gops"]),
            }
        )
    return rows


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _peer_lines(wl: dict) -> list[str]:
    lines = []
    for name, peer in (wl.get("peers") or {}).items():
        info, agree = peer.get("info", {}), peer.get("agreement") or {}
        versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
        if agree.get("reference") is None:
            verdict = agree.get("detail", "not compared")
        else:
            extra = ""
            if "identical_texts" in agree:
                extra = f", {100 * agree['identical_texts']:.1f}% of texts identical"
            elif "cosine_mean" in agree:
                extra = f", mean {agree['cosine_mean']:.6f}"
            elif "max_score_diff" in agree:
                extra = f", max score difference {agree['max_score_diff']:.2g}"
            value = agree["value"]
            shown = f"{value:.6f}" if agree["metric"].startswith("cosine") else f"{100 * value:.2f}%"
            verdict = (
                f"{agree['metric']} with `{agree['reference']}` {shown}{extra} "
                f"(all texts, bs {agree['batch_size']})"
            )
        lines.append(
            f"`{name}`: {verdict}. Inference precision {info.get('inference_precision') or '?'}"
            + (f"; {versions}" if versions else "")
            + (f"; IR export {info['export_s']:.1f} s (once, cached)" if info.get("export_s") else "")
            + "."
        )
    return lines


def render_markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# bertrt benchmark suite (benchmarks.harness)", ""]
    lines.append(
        f"Machine: {m.get('cpu', '?')}, {m.get('physical_cores')} physical cores ({m.get('logical_cpus')} "
        f"logical), flags {', '.join(m.get('cpu_flags', [])) or '?'}, {m.get('memory_gib')} GiB; load "
        f"average at start {m.get('load_average')}. {result['threads']} intra-op threads for every "
        f"system. Versions: " + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v) + "."
    )
    lines.append("")
    lines.append(
        f"Each figure: median of {result['repeats']} interleaved passes (rotating system order) over the "
        "same texts, min–max in parentheses. A pass is text in, final result out (entities with "
        '`aggregation_strategy="first"`, labels, mean-pooled vectors); transformers-based systems get '
        "the texts sorted by length like bertrt sorts them. `ort-raw` times only `session.run` on "
        "batches bertrt's tokenizer and batch plan prepared beforehand."
        + (" **--quick: smoke-run counts, not a measurement.**" if result.get("quick") else "")
    )
    lines += ["", "Systems: " + "; ".join(f"`{k}`: {v}" for k, v in result["systems"].items()) + ".", ""]

    lines += ["## Targets", "", "| target | measured | limit | result | detail |", "|---|---:|---:|---|---|"]
    for c in result["targets"]:
        value = "–" if c["value"] is None else f"{c['value']:.3g}"
        verdict = {True: "met", False: "**missed**", None: "not measured"}[c["met"]]
        lines.append(f"| {c['target']} | {value} | {c['op']} {c['limit']:.3g} | {verdict} | {c['detail']} |")
    lines.append("")

    peak = result["int8_peak"]
    systems = list(result["systems"])
    for name, wl in result["workloads"].items():
        w = wl["workload"]
        lines += [
            f"## {name}: {w['task']}",
            "",
            f"Model: {w['model']}. Texts: {w['data']} (mean {wl['mean_chars']:.0f} characters). "
            f"Bundle `{w['bundle']}`." + "".join(f" {n}." for n in w.get("notes", [])),
            "",
        ]
        bss = list(
            next(iter(wl["throughput"].values()), None) or [str(b) for b in result.get("batch_sizes", [])]
        )
        lines += [
            "| system | "
            + " | ".join(f"texts/s bs {b}" for b in bss)
            + " | p50 ms bs 1 | p95 ms | p99 ms | int8 GOP/s (share of peak) |",
            "|---|" + "---:|" * (len(bss) + 4),
        ]
        for s in systems:
            tp = wl["throughput"].get(s)
            if tp is None:  # a peer that could not run: the row says why
                why = (wl.get("unavailable") or {}).get(s, {}).get("reason", "not measured")
                lines.append(f"| {s} | unavailable: {_cell(why)} |" + " |" * (len(bss) + 3))
                continue
            lat = wl["latency_bs1"].get(s)
            cells = [_spread(tp[b]) for b in bss]
            cells += (
                [f"{lat['p50_ms']:.2f}", f"{lat['p95_ms']:.2f}", f"{lat['p99_ms']:.2f}"] if lat else ["–"] * 3
            )
            if s in ("bertrt-int8", "ort-raw", "optimum-int8", "optimum-native-int8"):
                best_bs, best = _best(wl["throughput"], s)
                gops = best / wl["n_texts"] * wl["padded_tokens"][best_bs] * wl["gops_per_token"]
                cells.append(f"{gops:.1f} ({100 * gops / peak['peak_gops']:.0f}%) at bs {best_bs}")
            else:
                cells.append("–")
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        peer_lines = _peer_lines(wl)
        if peer_lines:
            lines += ["", *peer_lines]
        fractions = gemm_fractions(result, wl)
        if fractions:
            gp = result["gemm_peak"]
            lines += [
                "",
                "Fraction of measured GEMM peak ("
                + ", ".join(f"{k} {v['gops']:.0f} GOP/s" for k, v in gp["peaks"].items())
                + f", `{Path(gp['path']).name}`; encoder matmul ops from config.json incl. attention "
                "products, on bertrt's padded batches):",
                "",
                "| system | precision | best texts/s (bs) | GOP per text | GOP/s | fraction of peak |",
                "|---|---|---:|---:|---:|---:|",
                *(
                    f"| {r['system']} | {r['precision']} | {r['texts_per_s']:.1f} ({r['batch_size']}) | "
                    f"{r['gop_per_text']:.3f} | {r['gops']:.1f} | {100 * r['fraction']:.1f}% |"
                    for r in fractions
                ),
            ]
        sz = wl["sizes"]
        lines += [
            "",
            f"Model on disk: PyTorch `{sz['pytorch_weights_file']}` {_mb(sz['pytorch_weights_bytes'])}, "
            f"ONNX fp32 {_mb(sz['onnx_fp32_bytes'])}, ONNX int8 {_mb(sz['onnx_int8_bytes'])}"
            + (
                f" (Optimum-native fp32 {_mb(sz['optimum_native_fp32_bytes'])}, int8 "
                f"{_mb(sz['optimum_native_int8_bytes'])})"
                if "optimum_native_int8_bytes" in sz
                else ""
            )
            + ". "
            f"Weight GOPs per token {wl['gops_per_token'] * 1000:.1f} MOP; padded tokens per pass "
            + ", ".join(f"bs {b}: {n}" for b, n in wl["padded_tokens"].items())
            + ".",
            "",
        ]

    probes = result.get("probes")
    if probes:
        lines += [
            f"## Cold start and peak memory ({probes['workload']} workload, fresh process per probe)",
            "",
            "| system | cold start s (new process to first result) | peak RSS MB | torch loaded |",
            "|---|---:|---:|---|",
        ]
        for s in systems:
            cs = probes["cold_start_s"].get(s)
            cold = (
                _spread(cs, "{:.2f}") + (f" ×{len(cs['runs'])}" if cs and len(cs["runs"]) > 1 else "")
                if cs
                else "–"
            )
            rss = probes["peak_rss_mb"].get(s)
            loaded = probes["torch_loaded"].get(s)
            lines.append(
                f"| {s} | {cold} | {'–' if rss is None else f'{rss:.0f}'} | "
                f"{'–' if loaded is None else 'yes' if loaded else 'no'} |"
            )
        lines += ["", f"Peak RSS: VmHWM of the probe process after {probes['rss_run']}.", ""]

    inst = result.get("installed")
    if inst:
        lines += [
            "## Installed size",
            "",
            (
                "Files listed in each distribution's RECORD, summed over the dependency closure (declared "
                "requirements, markers evaluated, no extras) in this environment."
            ),
            "",
        ]
        for key, label in (
            ("runtime", "runtime (bertrt's dependencies)"),
            ("reference", "torch + transformers"),
        ):
            d = inst[key]
            top = ", ".join(f"{k} {v / 1e6:.0f}" for k, v in list(d["packages"].items())[:8])
            lines.append(
                f"- {label}: roots {', '.join(d['roots'])}: **{d['total_bytes'] / 1e6:.0f} MB** in "
                f"{len(d['packages'])} distributions (largest, MB: {top})"
                + (f"; not installed: {', '.join(d['missing'])}" if d["missing"] else "")
            )
        lines.append("")

    g = peak["graphs"]
    lines += [
        "## int8 peak",
        "",
        f"Measured with single-operator ONNX graphs of shape M×K×N = {'×'.join(map(str, peak['shape']))} "
        f"in onnxruntime, {peak['threads']} threads, best of {peak['runs']} runs: "
        + ", ".join(f"{k} {v['best_gops']:.0f} GOP/s" for k, v in g.items())
        + f". Peak = {peak['peak_gops']:.0f} GOP/s. Model GOP/s count the weight matrices only (2 ops "
        "per multiply-add × padded tokens); attention score/context products and embeddings are not counted.",
        "",
    ]

    ev = result.get("eval")
    if ev:
        lines += ["## Accuracy (from eval.json)", ""]
        for e in ev.get("evaluations", []):
            cells = []
            for key, r in e["systems"].items():
                figure = (
                    f"F1 {r['micro']['f1']:.2f}"
                    if "micro" in r
                    else f"accuracy {r.get('accuracy', float('nan')):.2f}"
                )
                cells.append(f"{key} {figure}")
            lines.append(f"- {e['dataset']} ({e['size']}): " + "; ".join(cells))
        lines.append("")
    lines.append(f"Total run time: {result.get('total_s', 0):.0f} s.")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ plots


def plot_throughput(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(result["workloads"])
    systems = list(result["systems"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        tp = result["workloads"][name]["throughput"]
        bss = list(next(iter(tp.values()), None) or [str(b) for b in result.get("batch_sizes", [])])
        x = np.arange(len(bss))
        width = 0.8 / len(systems)
        for i, s in enumerate(systems):
            if s not in tp:  # a peer that could not run
                continue
            med = np.array([tp[s][b]["median"] for b in bss])
            lo = med - np.array([tp[s][b]["min"] for b in bss])
            hi = np.array([tp[s][b]["max"] for b in bss]) - med
            ax.bar(x + (i - (len(systems) - 1) / 2) * width, med, width, yerr=[lo, hi], label=s, capsize=2)
        ax.set_xticks(x, [f"bs {b}" for b in bss])
        ax.set_title(name)
        ax.set_ylabel("texts/s (median, min–max)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(
        f"Throughput by system and batch size — {result['machine'].get('cpu', '')}, "
        f"{result['threads']} threads",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["workloads"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        lat = result["workloads"][name]["latency_bs1"]
        systems = [s for s in result["systems"] if s in lat]
        ax.boxplot([lat[s]["samples_ms"] for s in systems], whis=(1, 99), showfliers=False)
        ax.set_xticks(range(1, len(systems) + 1), systems, rotation=40, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("batch-1 latency, ms (box: p25–p75, whiskers p1–p99)")
        ax.set_title(name)
    fig.suptitle("Latency distribution at batch size 1", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(result: dict, out_dir: Path) -> dict[str, Path]:
    """report.json (without per-call samples), report.md, throughput.png, latency.png."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "png_throughput": plot_throughput(result, out_dir / "throughput.png"),
        "png_latency": plot_latency(result, out_dir / "latency.png"),
    }
    slim = json.loads(json.dumps(result))
    for wl in slim["workloads"].values():
        for lat in wl["latency_bs1"].values():
            lat.pop("samples_ms", None)
    (out_dir / "report.json").write_text(json.dumps(slim, indent=1) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(render_markdown(result), encoding="utf-8")
    paths.update(json=out_dir / "report.json", md=out_dir / "report.md")
    return paths
