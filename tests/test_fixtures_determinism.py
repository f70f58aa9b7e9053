"""The tiny test tokenizers are the same in every process, so the tiny models and every figure
measured on them (int8 agreement, parity) are too. The Rust trainers break ties in HashMap order;
tests/builders.py trains deterministically instead, and this checks it across processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bertrt.architectures import ARCHITECTURES

pytest.importorskip("tokenizers")

ROOT = Path(__file__).resolve().parents[1]

# One line "arch sha256(tokenizer.json)" per table row, from the family builder tests/builders.py uses.
_HASH_SCRIPT = """
import hashlib
from bertrt.architectures import ARCHITECTURES
from tests.builders import TOKENIZER_FAMILIES
for arch, row in ARCHITECTURES.items():
    tok, _ = TOKENIZER_FAMILIES[row.tokenizer_family](arch)
    print(arch, tok.get_vocab_size(), hashlib.sha256(tok.to_str().encode()).hexdigest())
"""


def _hashes_in_a_new_process(hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [sys.executable, "-c", _HASH_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_test_tokenizers_are_identical_across_processes():
    first, second = _hashes_in_a_new_process("1"), _hashes_in_a_new_process("2")
    assert first == second
    assert first.count("\n") == len(ARCHITECTURES)  # one tokenizer per table row
    for line in first.splitlines():
        arch, vocab_size, _ = line.split()
        assert 300 <= int(vocab_size) <= 700, line
