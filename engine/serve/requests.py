"""A request body: read within its size limit and time, parsed as strict JSON, its texts checked.

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

import asyncio

from ..errors import InputError
from ..lines import lone_surrogate, parse_json
from .settings import ServeSettings

__all__ = [
    "MAX_JSON_DEPTH",
    "HTTPProblem",
    "check_texts",
    "check_unicode",
    "load_json",
    "read_body",
]

#: the deepest nesting of arrays and objects a request body may have (the body object is level 1)
MAX_JSON_DEPTH = 32


class HTTPProblem(Exception):
    """An error answered with ``status`` and the JSON body :meth:`payload`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict | None = None,
        param: str | None = None,
        **extra,
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers, extra
        self.param = param  # the request field at fault, when one is (OpenAI's error object names it)

    def payload(self) -> dict:
        return {"error": self.message, "code": self.code, **self.extra}


async def read_body(request, limit: int, drain: int = 0, timeout: float | None = None) -> bytes:
    """The body of a starlette ``request``, read within ``timeout`` seconds (408 ``body_timeout`` beyond).

    413 ``body_too_large`` once it passes ``limit`` bytes, declared or streamed: but only after the rest
    of the body has been read and discarded (up to ``drain`` bytes in all), because a server that answers
    and closes while the client still sends makes the client's socket fail with a reset before it reads
    the answer (Python's urllib and requests do). The 413 closes the connection.
    """
    declared = request.headers.get("content-length")
    too_large = HTTPProblem(
        413,
        "body_too_large",
        f"request body exceeds max_body_bytes={limit}",
        headers={"Connection": "close"},
        limit="max_body_bytes",
        max=limit,
    )

    async def read() -> bytes:
        chunks, size = [], 0
        over = declared is not None and declared.isdigit() and int(declared) > limit
        if over and int(declared) > drain:  # too much to drain: answer at once
            raise too_large
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                over = True
                if size > drain:
                    raise too_large
            if not over:
                chunks.append(chunk)
        if over:
            raise too_large
        return b"".join(chunks)

    if timeout is None:
        return await read()
    try:
        return await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        raise HTTPProblem(
            408,
            "body_timeout",
            f"the request body did not arrive within body_timeout_s={timeout:g} s",
            headers={"Connection": "close"},
            limit="body_timeout_s",
            max=timeout,
        ) from None


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


def check_unicode(texts: list[str], params: dict) -> None:
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


def check_texts(texts, settings: ServeSettings, field: str = "inputs", count: int | None = None) -> list[str]:
    """``texts`` (a JSON value) as a list of str within the request limits: HTTPProblem 400 for a wrong
    type or a text that is not valid Unicode, 422 for more than ``max_texts`` or a text over ``max_chars``.
    ``count``: the number of inputs checked against ``max_texts`` when it is not ``len(texts)`` (text
    pairs count once)."""
    if not isinstance(texts, list):
        raise HTTPProblem(
            400, "bad_request", f"{field!r} must be a string or a list of strings, got {type(texts).__name__}"
        )
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise HTTPProblem(
            400,
            "bad_request",
            f"{field!r} must hold strings only; not a string at index(es) {', '.join(map(str, bad[:20]))}",
        )
    count = len(texts) if count is None else count
    if count > settings.max_texts:
        raise HTTPProblem(
            422,
            "too_many_texts",
            f"{count} texts in one request exceed max_texts={settings.max_texts}",
            limit="max_texts",
            max=settings.max_texts,
            got=count,
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
    check_unicode(texts, {})
    return texts


def load_json(raw: bytes):
    """The body's strict JSON; HTTPProblem 400 ``malformed_json`` for anything else."""
    return _loads(raw)
