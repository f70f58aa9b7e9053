"""The ``bertrt bench`` command line (see :mod:`bertrt.bench`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..backends import add_providers_argument
from ..errors import BertrtError
from ..evaluate.report import DEFAULT_OUT
from .measure import DEFAULT_BATCH_SIZES, DEFAULT_REPEATS

__all__ = ["add_arguments", "require_extra", "run"]

log = logging.getLogger("bertrt")


def require_extra() -> None:
    """A BertrtError naming ``bertrt[bench]`` when psutil or matplotlib is missing (before any work)."""
    try:
        import matplotlib  # noqa: F401
        import psutil  # noqa: F401
    except ImportError as exc:
        raise BertrtError(
            f"bertrt bench needs psutil and matplotlib ({exc}): pip install 'bertrt[bench]'"
        ) from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle folder (as bertrt export writes it)")
    ref = parser.add_mutually_exclusive_group()
    ref.add_argument(
        "--reference",
        metavar="CHECKPOINT",
        default="auto",
        help="checkpoint folder whose transformers pipeline (PyTorch) is the reference (default: the "
        "checkpoint bundle.json records, when it is a local folder that exists)",
    )
    ref.add_argument("--no-reference", action="store_true", help="measure bertrt only")
    parser.add_argument(
        "--texts",
        metavar="FILE",
        help="your texts: .txt one a line, or .jsonl objects with 'text' (default: a built-in sample)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"results folder (default ./{DEFAULT_OUT})",
    )
    parser.add_argument(
        "--batch-sizes",
        nargs="+",
        metavar="N",
        type=int,
        default=list(DEFAULT_BATCH_SIZES),
        help=f"batch sizes to time (default {' '.join(map(str, DEFAULT_BATCH_SIZES))}; batch 1 is always "
        "timed, for the latency)",
    )
    parser.add_argument(
        "--repeats",
        metavar="N",
        type=int,
        default=DEFAULT_REPEATS,
        help=f"interleaved passes (default {DEFAULT_REPEATS})",
    )
    parser.add_argument(
        "--threads", metavar="N", type=int, help="intra-op threads of every system (default: physical cores)"
    )
    parser.add_argument(
        "--no-peak",
        action="store_true",
        help="skip the few-second GEMM peak measurement (the GOP/s column then has no %% of peak)",
    )
    add_providers_argument(
        parser,
        "onnxruntime execution providers for the bertrt systems, e.g. cuda (needs onnxruntime-gpu); "
        "with a reference, PyTorch CUDA fp32 and fp16 rows are added when torch has CUDA",
    )


def run(args) -> int:
    from . import measure, report
    from .systems import load_texts

    require_extra()
    texts = load_texts(args.texts) if args.texts else None
    result = measure.bench(
        args.bundle,
        reference=None if args.no_reference else args.reference,
        texts=texts,
        batch_sizes=args.batch_sizes,
        repeats=args.repeats,
        threads=args.threads,
        providers=getattr(args, "providers", None),
        peak=not args.no_peak,
    )
    paths = report.write(result, args.out)
    print(report.render_markdown(result))
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0
