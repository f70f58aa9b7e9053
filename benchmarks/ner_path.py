"""Batch-1 NER: the Python path around ``session.run``, before / after a change, interleaved.

``pipe(text, aggregation_strategy="first")`` one text at a time on the MiniLM-size NER bundle (the ``ner``
workload: all-MiniLM-L6-v2 + a 21-label head, WNUT-16 sentences; or ``--bundle``), int8, 2 threads. Each
call is split into: ``encode`` (:meth:`Pipeline.prepare`: options checked, text tokenized), ``session``
(``session.run``, onnxruntime's Python wrapper included), ``finish`` (the task's aggregation into
entities) and ``rest`` (the call's other work: batching, padding and feeds, the batch softmax, collecting
rows, shaping). Figures: p50 per call (ms) of each part and of the whole call.

Each system runs in its own process (``--before PYTHON``: an interpreter whose ``bertrt`` is the code
before the change, e.g. a checkout of main's venv; ``--after``: this one's), one round each in turn
(rotating order), ``--rounds`` rounds (``--spinning-off``: the after code once more with onnxruntime's
intra-op spinning off, :attr:`bertrt.backends.Plan.spinning`); medians over rounds with min-max, and the 1-min load average.

    python -m benchmarks.ner_path --before /path/to/main/.venv/bin/python [--rounds 5 --texts 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["main"]

PARTS = ("total", "encode", "session", "finish", "rest")

WORKER = r"""
import json, statistics, sys, time
import bertrt

bundle, texts_path, calls_per_text, spinning = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
texts = json.loads(open(texts_path, encoding="utf-8").read())
if spinning == "off":
    import dataclasses
    import bertrt.backends
    plan = dataclasses.replace(bertrt.backends.plan(bundle, "onnxruntime", "int8", 2), spinning=False)
    pipe = bertrt.pipeline("token-classification", bundle, plan=plan)
else:
    pipe = bertrt.pipeline("token-classification", bundle, precision="int8", threads=2)
spent = {"session": 0.0, "finish": 0.0}

def timed(name, fn):
    def call(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - start
    return call

pipe.session.run = timed("session", pipe.session.run)
pipe.spec.finish = timed("finish", pipe.spec.finish)  # the task object: this process only
prepare = pipe.prepare
encode = [0.0]
def prepare_timed(*args, **kwargs):
    start = time.perf_counter()
    try:
        return prepare(*args, **kwargs)
    finally:
        encode[0] += time.perf_counter() - start
pipe.prepare = prepare_timed
for text in texts[:16]:
    pipe(text, aggregation_strategy="first")
rows = {k: [] for k in ("total", "encode", "session", "finish", "rest")}
for _ in range(calls_per_text):
    for text in texts:
        spent["session"] = spent["finish"] = encode[0] = 0.0
        start = time.perf_counter()
        pipe(text, aggregation_strategy="first")
        total = time.perf_counter() - start
        rows["total"].append(total)
        rows["encode"].append(encode[0])
        rows["session"].append(spent["session"])
        rows["finish"].append(spent["finish"])
        rows["rest"].append(total - encode[0] - spent["session"] - spent["finish"])
print(json.dumps({k: 1000 * statistics.median(v) for k, v in rows.items()}))
"""


def _round(system: tuple[str, str], bundle: Path, texts: Path, calls: int) -> dict:
    python, spinning = system
    proc = subprocess.run(
        [python, "-c", WORKER, str(bundle), str(texts), str(calls), spinning],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{python}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="python whose bertrt is the code before the change")
    parser.add_argument("--after", default=sys.executable, help="python of the code after (default: this)")
    parser.add_argument("--bundle", type=Path, help="NER bundle (default: the ner workload's)")
    parser.add_argument("--texts", type=int, default=64, help="texts per round (default 64)")
    parser.add_argument("--calls", type=int, default=2, help="calls per text per round (default 2)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--spinning-off", action="store_true", help="also time the after code with intra-op spinning off"
    )
    args = parser.parse_args(argv)
    from benchmarks.workloads import load_workload

    workload = load_workload("ner", args.texts)
    bundle = args.bundle or workload.bundle
    systems = {
        "after": (args.after, "default"),
        **({"before": (args.before, "default")} if args.before else {}),
    }
    if args.spinning_off:
        systems["after, spinning off"] = (args.after, "off")
    figures = {name: {part: [] for part in PARTS} for name in systems}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        texts = Path(tmp) / "texts.json"
        texts.write_text(json.dumps(workload.texts), encoding="utf-8")
        for r in range(args.rounds):
            order = list(systems)[r % len(systems) :] + list(systems)[: r % len(systems)]
            for name in order:
                got = _round(systems[name], bundle, texts, args.calls)
                for part in PARTS:
                    figures[name][part].append(got[part])
            loads.append(os.getloadavg()[0])
    print(
        f"bundle {bundle}; {len(workload.texts)} texts x {args.calls} calls per round, {args.rounds} rounds; "
        f"1-min load {min(loads):.1f}–{max(loads):.1f}\n"
    )
    print("| system | " + " | ".join(f"{p} p50 ms" for p in PARTS) + " |")
    print("|---|" + "---:|" * len(PARTS))
    for name in systems:
        print(f"| {name} | " + " | ".join(_cell(figures[name][p]) for p in PARTS) + " |")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
