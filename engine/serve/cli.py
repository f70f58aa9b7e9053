"""The ``bertrt serve BUNDLE [BUNDLE ...]`` command: load and warm up every bundle, bind the port, serve.

The batching and limit flags take their defaults (and the numbers in their help) from
:class:`~bertrt.serve.settings.ServeSettings`; :func:`settings_from_args` maps them back. A flag out of
range (a port outside 0..65535, a setting :meth:`ServeSettings.problems` refuses) is a usage error
(exit 2). A bundle that fails to load or to warm up stops the command before the port opens (exit 1):
the server never reports healthy on a broken bundle, nor answers its requests blaming the client.

Binding beyond loopback needs an API key (``--api-key`` or ``BERTRT_API_KEY``) unless ``--insecure``.

SIGTERM: uvicorn stops listening and waits for every in-flight request; the batchers keep running until
the queues are empty, then the lifespan shutdown stops them and the process exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import math
import os
import re
import signal
import socket
import sys
from pathlib import Path

import uvicorn

from ..backends import add_backend_arguments, plan_from_args
from ..errors import BertrtError, ServeError, UsageError
from .app import create_app
from .protocol import uvicorn_config
from .settings import ServeSettings, apply_tuned_batch_size

__all__ = ["API_KEY_ENV", "add_arguments", "api_key_from", "parse_model_specs", "run", "settings_from_args"]

#: the environment variable holding the API key when ``--api-key`` is not given
API_KEY_ENV = "BERTRT_API_KEY"

log = logging.getLogger("bertrt.serve")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DEFAULTS = ServeSettings()
#: namespace attribute: the settings whose flag was given (a tuned batch size never replaces those)
_GIVEN = "_settings_given"


class _Given(argparse.Action):
    """Stores the value and notes the flag as given (its default stays the settings' default)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, _GIVEN, {*getattr(namespace, _GIVEN, ()), self.dest})


def _number(convert, ok, what: str):
    """An argparse ``type=``: ``convert(text)`` when ``ok(value)``, else the usage error "must be WHAT"."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    return parse


#: ``--port``: range-checked here, as the OS would take 70000 as 70000 mod 65536
_port = _number(int, lambda port: 0 <= port <= 65535, "an integer in 0..65535")
_positive_int = _number(int, lambda value: value >= 1, "an integer >= 1")
_seconds = _number(float, lambda value: math.isfinite(value) and value >= 0, "a finite number >= 0")


def parse_model_specs(specs: list[str]) -> dict[str, Path]:
    """``PATH`` (named after the folder) or ``NAME=PATH`` -> {name: path}; ServeError on bad/duplicate names."""
    models: dict[str, Path] = {}
    problems = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not _NAME.match(name):
            name, path = Path(spec).resolve().name, spec
        if not _NAME.match(name):
            problems.append(f"{spec!r}: model name {name!r} must match {_NAME.pattern} (use NAME=PATH)")
        elif name in models:
            problems.append(f"{spec!r}: model name {name!r} is used twice (use NAME=PATH)")
        else:
            models[name] = Path(path)
    if problems:
        raise ServeError("; ".join(problems))
    return models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    parser.add_argument(
        "bundles",
        nargs="+",
        metavar="BUNDLE",
        help="bundle folder, served as /models/<folder name>; or NAME=PATH",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    parser.add_argument(
        "--port",
        type=_port,
        default=8000,
        help="port, 0..65535 (0: any free port; the line 'listening on http://HOST:PORT' on stderr names it)",
    )
    add_backend_arguments(parser)
    parser.add_argument(
        "--threads", type=_positive_int, default=None, help="onnxruntime intra-op threads per model"
    )
    group = parser.add_argument_group("micro-batching")
    # the two sizes a tuned batch size may replace, unless given (settings_from_args)
    for dest, help_text in (
        (
            "max_batch_size",
            "texts per pipeline call (default {}), raised to a larger tuned pipeline batch size "
            "when not given",
        ),
        (
            "pipeline_batch_size",
            "the pipeline sorts a micro-batch by length and runs it in sub-batches of this many sequences "
            "(less padding; default {}, or the bundles' tuned batch size for this CPU with --backend auto, "
            "see bertrt tune)",
        ),
    ):
        group.add_argument(
            "--" + dest.replace("_", "-"),
            type=int,
            action=_Given,
            default=getattr(d, dest),
            help=help_text.format(getattr(d, dest)),
        )
    group.add_argument(
        "--max-batch-tokens",
        type=int,
        default=d.max_batch_tokens,
        help=f"tokens per pipeline call, as text-embeddings-inference's flag (default {d.max_batch_tokens}; "
        f"0: no token budget); counted with the model's tokenizer, each text cut at the model's max length",
    )
    group.add_argument(
        "--max-wait-ms",
        type=float,
        default=d.max_wait_ms,
        help=f"longest wait for a batch to fill, from its oldest request's arrival (default "
        f"{d.max_wait_ms:g}); requests that arrive while a call runs join the next batch "
        f"without waiting",
    )
    group.add_argument(
        "--max-queue",
        type=int,
        default=d.max_queue,
        help=f"texts waiting per model; beyond it requests get 503 (default {d.max_queue})",
    )
    group.add_argument(
        "--no-batching",
        dest="batching",
        action="store_false",
        default=d.batching,
        help="run every request alone (for comparison)",
    )
    limits = parser.add_argument_group("request limits")
    for dest, help_text in (
        ("max_body_bytes", "413 beyond (default {} bytes)"),
        ("max_texts", "texts per request, 422 beyond (default {})"),
        ("max_chars", "characters per text, 422 beyond (default {})"),
        (
            "max_drain_bytes",
            "a body over --max-body-bytes is read and discarded up to this size before the 413, so every "
            "client reads the answer (default {}); beyond it the connection is closed",
        ),
    ):
        limits.add_argument(
            "--" + dest.replace("_", "-"),
            type=int,
            default=getattr(d, dest),
            help=help_text.format(getattr(d, dest)),
        )
    limits.add_argument(
        "--request-timeout",
        dest="request_timeout_s",
        type=float,
        default=d.request_timeout_s,
        metavar="SECONDS",
        help=f"a request not answered this long after it was queued gets 504 (default "
        f"{d.request_timeout_s:g}; 0: no deadline); a queued one is dropped unrun, a running one is "
        f"answered at once but its pipeline call cannot be interrupted, so its results are discarded",
    )
    faults = parser.add_argument_group("slow and many clients")
    for dest, help_text in (
        (
            "header_timeout_s",
            "a connection's request headers must arrive within this (default {:g}); else 408 and closed",
        ),
        (
            "body_timeout_s",
            "a request's body must arrive within this after its headers (default {:g}); else 408",
        ),
        ("keep_alive_s", "close an idle keep-alive connection after this (default {:g})"),
    ):
        faults.add_argument(
            "--" + dest[:-2].replace("_", "-"),
            dest=dest,
            type=float,
            default=getattr(d, dest),
            metavar="SECONDS",
            help=help_text.format(getattr(d, dest)),
        )
    faults.add_argument(
        "--max-connections",
        type=int,
        default=d.max_connections,
        help=f"open connections; one beyond gets 503 and is closed (default {d.max_connections})",
    )
    auth = parser.add_argument_group("authentication")
    auth.add_argument(
        "--api-key",
        default=None,
        help="every route but /health needs 'Authorization: Bearer KEY' or 'X-API-Key: KEY' (default: the "
        "BERTRT_API_KEY environment variable; prefer it: a flag shows in the process list)",
    )
    auth.add_argument(
        "--insecure",
        action="store_true",
        help="allow binding beyond loopback without an API key",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=_seconds,
        default=60.0,
        help="seconds to finish in-flight requests after SIGTERM (default 60)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")


def settings_from_args(args: argparse.Namespace, pipelines: dict | None = None) -> ServeSettings:
    """The ServeSettings the parsed flags describe (a field without a flag keeps its default); with
    ``pipelines`` ({name: Pipeline}), their tuned batch size where no batch flag was given
    (:func:`~bertrt.serve.settings.apply_tuned_batch_size`, logged)."""
    given = vars(args)
    settings = ServeSettings(
        **{f.name: given[f.name] for f in dataclasses.fields(ServeSettings) if f.name in given}
    )
    if pipelines is None:
        return settings
    settings, why = apply_tuned_batch_size(settings, pipelines, getattr(args, _GIVEN, set()))
    log.info("batching: %s; max batch size %d", why, settings.max_batch_size)
    return settings


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError(f"cannot resolve --host {host!r}: {exc}") from None
    family, _, _, _, address = infos[0]
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without
    # it a keep-alive client waits for a delayed ACK (~40 ms) on every response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_key_from(args) -> str | None:
    """The API key (``--api-key``, else ``BERTRT_API_KEY``); UsageError when binding beyond loopback
    without one unless ``--insecure``, or for an empty key."""
    key = getattr(args, "api_key", None)
    if key is None:
        key = os.environ.get(API_KEY_ENV)
    if key is not None and not key.strip():
        raise UsageError(f"the API key (--api-key or {API_KEY_ENV}) is empty")
    if key is None and not _is_loopback(args.host) and not getattr(args, "insecure", False):
        raise UsageError(
            f"--host {args.host} is reachable from other machines: set an API key (--api-key or "
            f"{API_KEY_ENV}), or pass --insecure to serve without one"
        )
    return key


def run(args) -> int:
    from ..pipelines import pipeline

    settings = settings_from_args(args)
    problems = settings.problems()
    if problems:
        raise UsageError("; ".join(problems))
    api_key = api_key_from(args)
    specs = parse_model_specs(args.bundles)
    pipelines = {}
    for name, path in specs.items():  # load everything first: a bad bundle fails before the port opens
        try:
            pipelines[name] = pipeline(None, path, plan=plan_from_args(args, path))
        except BertrtError as exc:
            raise ServeError(f"model {name!r}: {exc}") from None
    settings = settings_from_args(args, pipelines)
    app = create_app(pipelines, settings, api_key=api_key)
    for name, worker in app.state.workers.items():  # and warm it up: a model that cannot run is not served
        try:
            worker.warm_up()
        except Exception as exc:
            raise ServeError(
                f"model {name!r} failed its warm-up, not starting: {type(exc).__name__}: {exc}"
            ) from None
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    if not (host.startswith("127.") or host in ("::1", "localhost")):
        log.warning("listening on %s: reachable from other machines", host)
    config = uvicorn_config(
        app,
        settings,
        log_level="info" if log.isEnabledFor(logging.INFO) else "warning",
        access_log=args.access_log,
        timeout_graceful_shutdown=args.shutdown_timeout,
    )
    server = uvicorn.Server(config)
    stopped_by = []
    # uvicorn re-raises the signal that stopped it once it has shut down; a handler of ours turns that
    # into a normal return (exit 0) instead of death by SIGTERM.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stopped_by.append(signum))
    shown = f"[{host}]" if ":" in host else host
    sys.stderr.write(
        f"bertrt serve: listening on http://{shown}:{port} "
        f"(models: {', '.join(pipelines)}; batching {'on' if settings.batching else 'off'})\n"
    )
    sys.stderr.flush()
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    if not server.started:
        raise ServeError("the server did not start (see the log above)")
    if stopped_by:
        log.info("stopped by SIGTERM after draining every accepted request")
    return 0
