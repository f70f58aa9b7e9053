"""The comparison server for the load benchmark: ``transformers.pipeline`` (PyTorch) behind FastAPI/uvicorn.

The way a user serves a checkpoint by hand: the same request shape and route as ``bertrt serve``
(``POST /models/{name}/predict`` with ``{"inputs", "parameters"}``, ``GET /health``), one pipeline call
per request, run in a single worker thread so that concurrent requests never make torch calls compete
for the cores (what a thread pool of simultaneous torch calls would do on a 2-core machine).

Usage: ``python -m benchmarks.serve_transformers CHECKPOINT [--name NAME] [--port 0] [--threads N]``; the
line ``listening on http://127.0.0.1:PORT`` on stderr names the port. Binds to loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bertrt.results import to_jsonable as _jsonable

__all__ = ["create_app", "main"]


def create_app(name: str, pipe):
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        executor.shutdown(wait=True)

    app = FastAPI(title="transformers.pipeline server (benchmark baseline)", lifespan=lifespan)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.post("/models/{model}/predict")
    async def predict(model: str, request: Request):
        if model != name:
            return JSONResponse({"error": f"no model named {model!r}"}, status_code=404)
        try:
            body = json.loads(await request.body())
            inputs, params = body["inputs"], body.get("parameters") or {}
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)

        def call():
            return json.dumps(_jsonable(pipe(inputs, **params))).encode()

        try:
            payload = await asyncio.get_running_loop().run_in_executor(executor, call)
        except (ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return Response(payload, media_type="application/json")

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serve_transformers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("checkpoint", type=Path, help="Hugging Face checkpoint folder")
    parser.add_argument("--name", default=None, help="model name in the route (default: folder name)")
    parser.add_argument("--task", default=None, help="pipeline task (default: from config.json)")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)

    import torch
    import transformers
    import uvicorn

    if args.threads:
        torch.set_num_threads(args.threads)
    task = args.task
    if task is None:
        from bertrt.tasks import infer_task

        task = infer_task(json.loads((args.checkpoint / "config.json").read_text()))
    pipe = transformers.pipeline(task, model=str(args.checkpoint), tokenizer=str(args.checkpoint), device=-1)
    pipe("Warm-up: Maria flew from Groningen to New York on Monday.")
    name = args.name or args.checkpoint.resolve().name
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP: asyncio sets NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))  # loopback only
    sock.listen(2048)
    sys.stderr.write(
        f"serve_transformers: listening on http://127.0.0.1:{sock.getsockname()[1]} "
        f"(model: {name}, torch threads {torch.get_num_threads()})\n"
    )
    sys.stderr.flush()
    server = uvicorn.Server(uvicorn.Config(create_app(name, pipe), log_level="warning", access_log=False))
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
