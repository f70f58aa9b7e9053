"""Refresh the report from the latest results, and the README's tables from the report.

    python -m benchmarks.readme [--results benchmarks/results] [--readme README.md]

1. Re-reads ``eval.json`` into ``report.json`` (the accuracy targets) and re-renders ``report.md``, so a
   later ``python -m benchmarks.eval_report report`` shows up without re-timing anything.
2. Replaces the blocks between ``<!-- bench:start -->``/``<!-- bench:end -->`` and
   ``<!-- serve:start -->``/``<!-- serve:end -->`` in the README with the report's target table, a
   throughput summary, and the load benchmark table.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from . import report
from .harness import _best_optimum_target

ROOT = Path(__file__).resolve().parent.parent
SUMMARY_SYSTEMS = ("pytorch", "optimum-native-int8", "optimum-intel", "bertrt-fp32", "bertrt-int8", "ort-raw")


def refresh_report(results: Path) -> dict:
    result = json.loads((results / "report.json").read_text(encoding="utf-8"))
    eval_path = results / "eval.json"
    if eval_path.is_file():
        result["eval"] = json.loads(eval_path.read_text(encoding="utf-8"))
    result["targets"] = _best_optimum_target(result, report.targets(result))
    (results / "report.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (results / "report.md").write_text(report.render_markdown(result), encoding="utf-8")
    return result


def bench_block(result: dict) -> str:
    m = result["machine"]
    machine = (
        f"Machine: {m['cpu']}, {m['physical_cores']} cores ({', '.join(m['cpu_flags'])}), "
        f"{m['memory_gib']} GiB; {result['threads']} intra-op threads for every system; load average "
        f"at start {m['load_average'][0]}. Median texts/s at each system's best batch size (1, 8 or 32), "
        f"text in, final result out."
    )
    lines = [
        machine,
        "",
        "| workload | " + " | ".join(SUMMARY_SYSTEMS) + " |",
        "|---|" + "---:|" * len(SUMMARY_SYSTEMS),
    ]
    for name, wl in result["workloads"].items():
        cells = []
        for system in SUMMARY_SYSTEMS:
            tp = wl["throughput"].get(system)
            if not tp:
                cells.append("–")
                continue
            best_bs, best = max(((bs, float(v["median"])) for bs, v in tp.items()), key=lambda kv: kv[1])
            cells.append(f"{best:.0f} (bs {best_bs})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Targets (issue 11), computed by the harness, never tuned:",
        "",
        "| target | measured | limit | result |",
        "|---|---:|---:|---|",
    ]
    for c in result["targets"]:
        value = "–" if c.get("value") is None else f"{c['value']:.3g}"
        verdict = {True: "met", False: "**missed**", None: "n/a"}[c.get("met")]
        lines.append(f"| {c['target']} | {value} | {c['op']} {c['limit']:.3g} | {verdict} |")
    return "\n".join(lines)


def serve_block(results: Path) -> str:
    text = (results / "serve.md").read_text(encoding="utf-8")
    table = [ln for ln in text.splitlines() if ln.startswith("|")]
    notes = [ln for ln in text.splitlines() if ln.startswith("- concurrency")]
    return "\n".join(table + [""] + notes)


def _replace(readme: str, tag: str, body: str) -> str:
    pattern = re.compile(rf"<!-- {tag}:start -->.*?<!-- {tag}:end -->", re.DOTALL)
    if not pattern.search(readme):
        raise SystemExit(f"README has no <!-- {tag}:start --> ... <!-- {tag}:end --> block")
    return pattern.sub(lambda _: f"<!-- {tag}:start -->\n{body}\n<!-- {tag}:end -->", readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    result = refresh_report(args.results)
    readme = args.readme.read_text(encoding="utf-8")
    readme = _replace(readme, "bench", bench_block(result))
    if (args.results / "serve.md").is_file():
        readme = _replace(readme, "serve", serve_block(args.results))
    args.readme.write_text(readme, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
