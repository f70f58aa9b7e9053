"""The ``bertrt`` command line: one console script, one module per subcommand.

Subcommand modules are imported only when that subcommand runs, so ``bertrt predict`` never loads
the exporter (or torch). Each module exposes ``add_arguments(parser)`` and ``run(args) -> int``.

``bertrt --version`` prints ``bertrt <version>``. Exit codes: 0 success, 1 runtime error (one line on
stderr), 2 usage error (argparse's, and :class:`~bertrt.errors.UsageError` a subcommand raises after
parsing, e.g. a ``bertrt predict`` flag that the bundle's task does not take).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .errors import BertrtError, UsageError

__all__ = ["main"]

log = logging.getLogger("bertrt")

#: what ``bertrt --version`` prints
_VERSION = f"bertrt {__version__}"

# name -> (module, one-line help). The module is imported only when its subcommand is used.
_SUBCOMMANDS = {
    "export": ("bertrt.export.cli", "export a Hugging Face checkpoint to an optimized, int8 ONNX bundle"),
    "predict": ("bertrt.cli_predict", "run a bundle's pipeline on texts (arguments, stdin or JSONL)"),
    "bench": ("bertrt.bench.cli", "measure a bundle: every backend x precision against PyTorch, interleaved"),
    "eval": ("bertrt.evaluate.cli", "entity-level / accuracy evaluation of a bundle on labelled data"),
    "serve": ("bertrt.serve", "serve bundles over HTTP with dynamic micro-batching"),
    "batch": ("bertrt.batch.cli", "run a bundle over .jsonl/.csv/.parquet files, resumable, local or on Ray"),
    "tune": ("bertrt.tune", "measure backends x precisions on this machine; write the gated winner"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # exit code 2 with one line, as argparse does, but catchable in tests
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _root_parser() -> _Parser:
    parser = _Parser(prog="bertrt", description="A lean ONNX inference engine for BERT-family encoders.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    parser.add_argument("--version", action="version", version=_VERSION, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in _SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    root = _root_parser()
    # Find the subcommand without importing any subcommand module.
    command = next((a for a in argv if not a.startswith("-")), None)
    if "--version" in argv[: argv.index(command) if command is not None else len(argv)]:
        print(_VERSION)
        return 0
    if command is None or command not in _SUBCOMMANDS:
        if command is None and any(a in ("-h", "--help") for a in argv):
            root.print_help()
            return 0
        root.parse_args(argv)  # prints usage and exits 2 for an unknown or missing command
        root.print_help(sys.stderr)
        return 2
    index = argv.index(command)
    verbose = any(a in ("-v", "--verbose") for a in argv[:index])
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    module_name, help_text = _SUBCOMMANDS[command]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(
            f"bertrt {command}: needs an optional dependency that is not installed ({exc}); "
            f"install the matching extra, e.g. pip install 'bertrt[{_extra_of(command)}]'",
            file=sys.stderr,
        )
        return 1
    parser = _Parser(prog=f"bertrt {command}", description=help_text)
    module.add_arguments(parser)
    # A module whose positionals take several values (``predict BUNDLE [TEXT ...]``) asks for intermixed
    # parsing, so options may come before or after the texts.
    parse = parser.parse_intermixed_args if getattr(module, "INTERMIXED_ARGS", False) else parser.parse_args
    args = parse(argv[index + 1 :])
    try:
        return int(module.run(args) or 0)
    except UsageError as exc:  # found after parsing: a usage error all the same
        parser.print_usage(sys.stderr)
        print(f"bertrt {command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except BertrtError as exc:
        print(f"bertrt {command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"bertrt {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # never a traceback: one line, exit 1 (-v logs the traceback)
        log.info("unexpected error", exc_info=True)
        message = " ".join(str(exc).split()) or "no details"
        print(f"bertrt {command}: error: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1


def _extra_of(command: str) -> str:
    return {"export": "export", "bench": "bench", "eval": "eval", "serve": "serve", "batch": "batch"}.get(
        command, "dev"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
