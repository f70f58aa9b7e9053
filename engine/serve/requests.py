"""A predict request: the body read within its size limit and parsed into a :class:`PredictRequest`.

Every problem is an :class:`HTTPProblem`: a status, a stable ``code`` and a message naming the problem,
answered as JSON ``{"error": message, "code": code, ...extra}`` (the extra fields name a broken limit).

Malformed or pathological JSON is a 400 ``malformed_json``, never a server error: syntax errors, invalid
UTF-8, nesting deeper than :data:`MAX_JSON_DEPTH` (which also keeps every later walk of the values, such
as the parameters' canonical key, far from Python's recursion limit), integers of more digits than Python
converts, and NaN / Infinity / out-of-range numbers (not JSON). A text that is not valid Unicode (a lone
surrogate, from a ``\\ud800`` escape or its UTF-8 bytes) is a 400 ``bad_input`` naming its index, before
anything is queued, so it never fails a batch; one in the parameters is a 400 ``bad_parameters``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..lines import lone_surrogate, parse_json
from .settings import ServeSettings

__all__ = ["MAX_JSON_DEPTH", "HTTPProblem", "PredictRequest", "parse_request", "read_body"]

_REQUEST_KEYS = ("inputs", "parameters")

#: the deepest nesting of arrays and objects a request body may have (the body object is level 1)
MAX_JSON_DEPTH = 32


class HTTPProblem(Exception):
    """An error answered with ``status`` and the JSON body :meth:`payload`."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers, extra

    def payload(self) -> dict:
        return {"error": self.message, "code": self.code, **self.extra}


@dataclass(frozen=True)
class PredictRequest:
    """A parsed ``POST /models/{name}/predict`` body."""

    inputs: str | list[str]  # one text (one result) or a list of texts (a list of results)
    parameters: dict  # the task's pipeline options

    @property
    def texts(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else self.inputs


async def read_body(request, limit: int) -> bytes:
    """The body of a starlette ``request``; 413 as soon as it passes ``limit`` bytes, declared or streamed."""
    declared = request.headers.get("content-length")
    too_large = HTTPProblem(
        413,
        "body_too_large",
        f"request body exceeds max_body_bytes={limit}",
        limit="max_body_bytes",
        max=limit,
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _loads(raw: bytes):
    """The body's strict JSON (:func:`bertrt.lines.parse_json`, at most :data:`MAX_JSON_DEPTH` deep); any
    failure, pathological input included, is a 400 ``malformed_json``. Lone surrogates in strings are
    left to :func:`_check_unicode`, which names the text's index."""
    try:
        return parse_json(raw, max_depth=MAX_JSON_DEPTH, strings=False)
    except InputError as exc:
        raise HTTPProblem(400, "malformed_json", f"request body is not valid JSON: {exc}") from None


def _surrogate(text: str) -> str | None:
    """Why ``text`` is not valid Unicode (it holds a lone surrogate), or None when it is."""
    found = lone_surrogate(text)
    return None if found is None else f"lone surrogate U+{found[1]:04X} at character {found[0]}"


def _check_unicode(texts: list[str], params: dict) -> None:
    """400 naming the first text (by index) or parameter that UTF-8 cannot encode."""
    bad = [(i, why) for i, why in ((i, _surrogate(text)) for i, text in enumerate(texts)) if why]
    if bad:
        (first, why), indexes = bad[0], [i for i, _ in bad[:20]]
        what = (
            f"text at index {first} is"
            if len(bad) == 1
            else f"texts at index {', '.join(map(str, indexes))} are"
        )
        raise HTTPProblem(
            400,
            "bad_input",
            f"{what} not valid Unicode: {why}"
            + ("" if len(bad) == 1 else f" of the text at index {first}")
            + " (a surrogate U+D800-U+DFFF is valid only as half of a pair)",
            indexes=indexes,
        )
    for name, value in params.items():
        stack = [name, value]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                stack.extend(item)
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, str) and _surrogate(item):
                raise HTTPProblem(
                    400, "bad_parameters", f"parameter {name!r} is not valid Unicode: {_surrogate(item)}"
                )


def parse_request(raw: bytes, settings: ServeSettings) -> PredictRequest:
    """The request in ``raw``; HTTPProblem 400 (JSON, shape, text) or 422 (a limit) naming the problem."""
    body = _loads(raw)
    if not isinstance(body, dict):
        raise HTTPProblem(
            400, "bad_request", f"request body must be a JSON object with 'inputs', got {type(body).__name__}"
        )
    unknown = sorted(set(body) - set(_REQUEST_KEYS))
    if unknown:
        raise HTTPProblem(
            400, "bad_request", f"unknown field(s) {', '.join(unknown)}; accepted: inputs, parameters"
        )
    if "inputs" not in body:
        raise HTTPProblem(400, "bad_request", "missing field 'inputs' (a string or a list of strings)")
    inputs, params = body["inputs"], body.get("parameters")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise HTTPProblem(
            400, "bad_parameters", f"'parameters' must be a JSON object, got {type(params).__name__}"
        )
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(texts, list):
        raise HTTPProblem(
            400, "bad_request", f"'inputs' must be a string or a list of strings, got {type(inputs).__name__}"
        )
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise HTTPProblem(
            400,
            "bad_request",
            f"'inputs' must hold strings only; not a string at index(es) {', '.join(map(str, bad[:20]))}",
        )
    if len(texts) > settings.max_texts:
        raise HTTPProblem(
            422,
            "too_many_texts",
            f"{len(texts)} texts in one request exceed max_texts={settings.max_texts}",
            limit="max_texts",
            max=settings.max_texts,
            got=len(texts),
        )
    long = [i for i, text in enumerate(texts) if len(text) > settings.max_chars]
    if long:
        raise HTTPProblem(
            422,
            "text_too_long",
            f"text(s) at index {', '.join(map(str, long[:20]))} exceed "
            f"max_chars={settings.max_chars} characters",
            limit="max_chars",
            max=settings.max_chars,
            indexes=long[:20],
        )
    _check_unicode(texts, params)
    return PredictRequest(inputs, params)
