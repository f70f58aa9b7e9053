"""Rows and files for the batch tests, and a comparison of ``result`` values with direct pipeline results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tests.corpus import PARITY_TEXTS, TRAIN_TEXT

__all__ = ["assert_same", "make_texts", "read_output", "write_rows"]


def make_texts(n: int) -> list[str]:
    """``n`` distinct texts (the parity corpus and training sentences, numbered): accents, emoji, CJK,
    newlines, and texts longer than the tiny models' max length."""
    base = list(dict.fromkeys([*PARITY_TEXTS, *TRAIN_TEXT]))
    return [f"{base[i % len(base)]} {i}" for i in range(n)]


def write_rows(rows: list[dict], path: Path) -> Path:
    """``rows`` as a .jsonl (one object per line, as given), .csv or .parquet file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".csv":
        pacsv.write_csv(pa.Table.from_pylist(rows), path)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=37)  # shards cross row groups
    return path


def read_output(folder: Path, output_format: str = "parquet") -> list[dict]:
    """Every output row, in shard order (part file names sort in input order)."""
    files = sorted(Path(folder).glob(f"part-*.{output_format}"))
    if output_format == "jsonl":
        return [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines()]
    return ds.dataset([str(f) for f in files], format="parquet").to_table().to_pylist()


def assert_same(got, expected, where: str = "result", atol: float = 1e-5) -> None:
    """``got`` (a value read back from Arrow) equals ``expected`` (the pipeline's), floats to ``atol``."""
    if isinstance(expected, np.ndarray):
        array = np.asarray(got, dtype=np.float32).reshape(expected.shape)
        assert np.allclose(array, expected, atol=atol), f"{where}: vectors differ"
    elif isinstance(expected, dict):
        assert set(got) == set(expected), f"{where}: keys {sorted(got)} != {sorted(expected)}"
        for key in expected:
            assert_same(got[key], expected[key], f"{where}.{key}", atol)
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), f"{where}: {len(got)} items, expected {len(expected)}"
        for i, (a, b) in enumerate(zip(got, expected)):
            assert_same(a, b, f"{where}[{i}]", atol)
    elif isinstance(expected, float):
        assert abs(got - expected) <= atol, f"{where}: {got} != {expected}"
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"
