"""The bench's outputs: ``bench.json`` (every figure), ``bench.md`` (the table) and ``bench.png`` (the plot)."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["FILES", "plot", "render_markdown", "write"]

#: what :func:`write` puts into the output folder
FILES = ("bench.json", "bench.md", "bench.png")


def _rate(figures: dict | None) -> str:
    if not figures:
        return "-"
    return f"{figures['median']:.1f} ({figures['min']:.1f}–{figures['max']:.1f})"


def _agreement(figures: dict | None) -> str:
    if not figures:
        return "-"
    return ", ".join(f"{k} {v:.4f}" for k, v in figures.items())


def _best(row: dict) -> float | None:
    tp = row.get("throughput") or {}
    return max((v["median"] for bs, v in tp.items() if bs != "1"), default=None) or (
        tp["1"]["median"] if "1" in tp else None
    )


def _gemm_header(result: dict) -> str:
    peaks = (result.get("gemm") or {}).get("peaks") or {}
    return f"GEMM GOP/s (% of {'/'.join(peaks) or 'measured'} peak)"


def _gemm_cell(row: dict) -> str:
    gemm = row.get("gemm")
    if not gemm:
        return "-"
    if gemm.get("fraction_of_peak") is None:
        return f"{gemm['best_gops']:.1f}"
    return f"{gemm['best_gops']:.1f} ({100 * gemm['fraction_of_peak']:.0f}% {gemm['peak_precision']})"


def _gemm_note(result: dict) -> list[str]:
    work = result.get("gemm")
    if not work:
        return [
            "GEMM GOP/s: no op count for this bundle (bundle.json has no matmul_ops, config.json no sizes)."
        ]
    a, b, c = work["coefficients"]
    peaks = work.get("peaks") or {}
    measured = "; ".join(
        f"{p} {v['gops']:.0f} GOP/s ({v['min_gops']:.0f}–{v['max_gops']:.0f}, {v['library']} "
        f"{'×'.join(map(str, v['shape']))})"
        for p, v in peaks.items()
    )
    return [
        f"GEMM GOP/s: matmul ops of the texts' {work['sequences']} sequences ({work['mean_tokens']} tokens "
        f"on average; ops per sequence of L tokens {a} + {b}·L + {c}·L², from {work['ops_source']}; padding "
        f"not counted: {work['gop_per_text']:.4f} GOP per text) × the row's best texts/s over the batch "
        "sizes; % of the GEMM peak of the row's precision on this machine"
        + (
            f", measured after the passes with the same threads in {work['seconds']:.1f} s: {measured}."
            if peaks
            else " (not measured)."
        ),
    ]


def render_markdown(result: dict) -> str:
    """The result as Markdown: the setting, then one table row per system."""
    cpu = result["machine"]
    sizes = result["batch_sizes"]
    baseline = result.get("baseline")
    rows = result["systems"]
    base_rate = next((_best(r) for r in rows if r["system"] == baseline and r.get("available")), None)
    ref = result["reference"]
    lines = [
        f"# bertrt bench: {result['bundle']}",
        "",
        f"Task {result['task']}; {result['texts']['count']} texts ({result['texts']['source']}, "
        f"{result['texts']['mean_chars']} characters on average); machine {cpu.get('model')}, "
        f"{cpu.get('cores')} cores ({', '.join(cpu.get('flags') or []) or 'no listed flags'}); "
        f"{result['threads']} threads"
        + (f", providers {', '.join(result['providers'])}" if result.get("providers") else "")
        + f"; bertrt {result['bertrt']}.",
        f"Reference: {ref['checkpoint'] or 'none'} ({ref['note']}). Answers compared with: "
        f"{baseline or 'nothing (no reference and no onnxruntime fp32)'}.",
        f"Throughput: texts/s, text in, final result out, median of {result['repeats']} interleaved "
        "passes (min–max). Latency: batch-1 calls. Cold start: pipeline build + first call (libraries "
        "already imported). RSS: resident-set growth over the build and one pass at the largest batch size.",
        "",
        "| system | "
        + " | ".join(f"texts/s bs {bs}" for bs in sizes)
        + f" | × {baseline or 'baseline'} | {_gemm_header(result)} | p50 / p90 ms | cold start s | RSS MiB "
        "| agreement |",
        "|---|" + "---:|" * len(sizes) + "---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if not row.get("available"):
            lines.append(
                f"| {row['system']} | "
                + " | ".join("-" for _ in sizes)
                + f" | - | - | - | - | - | unavailable: {row.get('reason', '')} |"
            )
            continue
        best = _best(row)
        ratio = f"{best / base_rate:.2f}" if best and base_rate else "-"
        lat = row["latency_bs1"]
        agreement = "(baseline)" if row["system"] == baseline else _agreement(row.get("agreement"))
        lines.append(
            f"| {row['system']} | "
            + " | ".join(_rate(row["throughput"].get(str(bs))) for bs in sizes)
            + f" | {ratio} | {_gemm_cell(row)} | {lat['p50_ms']:.2f} / {lat['p90_ms']:.2f} | {row['cold_start_s']:.2f} | "
            f"{row['rss_delta_mb']:+.1f} | {agreement} |"
        )
    lines += [
        "",
        f"× {baseline or 'baseline'}: each system's best texts/s over the batch sizes above 1 "
        "(batch 1 when it is the only one), divided by the baseline's.",
        *_gemm_note(result),
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path:
    """Grouped bars: texts/s of each system at each batch size, min-max as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["systems"] if r.get("available")]
    sizes = result["batch_sizes"]
    width = 0.8 / max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(sizes) + 0.4 * len(rows)), 4.0))
    for i, row in enumerate(rows):
        figures = [row["throughput"][str(bs)] for bs in sizes]
        medians = [f["median"] for f in figures]
        errors = [
            [m - f["min"] for m, f in zip(medians, figures)],
            [f["max"] - m for m, f in zip(medians, figures)],
        ]
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(sizes))]
        ax.bar(xs, medians, width, yerr=errors, capsize=2, label=row["system"])
    ax.set_xticks(range(len(sizes)), [f"batch {bs}" for bs in sizes])
    ax.set_ylabel("texts/s (median, min-max)")
    ax.set_title(
        f"bertrt bench: {Path(result['bundle']).name} ({result['task']}, {result['threads']} threads)"
    )
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(result: dict, out_dir) -> dict[str, Path]:
    """:data:`FILES` into ``out_dir`` (created); returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in FILES}
    paths["bench.json"].write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    paths["bench.md"].write_text(render_markdown(result), encoding="utf-8")
    plot(result, paths["bench.png"])
    return paths
