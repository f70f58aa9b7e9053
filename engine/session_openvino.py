"""The OpenVINO session: the same interface as :class:`bertrt.session.OnnxSession`, on OpenVINO's CPU plugin.

OpenVINO reads the bundle's ONNX graph directly (``Core().read_model``), onnxruntime's fused
``com.microsoft`` operators included, with dynamic batch and sequence dimensions. Precisions:

- ``fp32``: ``INFERENCE_PRECISION_HINT="f32"`` (OpenVINO's own default is bf16 on a CPU that has it);
- ``bf16``: ``INFERENCE_PRECISION_HINT="bf16"`` (AMX on Sapphire Rapids and later, avx512_bf16 on Zen 4);
  refused with :class:`~bertrt.errors.BackendError` on a CPU without bf16;
- ``int8``: the fp32 graph with its MatMul weights compressed to int8 per output channel by
  ``nncf.compress_weights`` (data-free, at load), f32 elsewhere, and the CPU plugin's dynamic activation
  quantization (``DYNAMIC_QUANTIZATION_GROUP_SIZE``: one scale per group of that many input channels of
  each token, so, like bertrt's per-token recipe, no scale is shared between texts). The CPU plugin
  quantizes the activations only of a sequence of at least :data:`INT8_MIN_SEQUENCE` (16) tokens: a
  shorter one runs with f32 activations, so a short text alone (batch 1) got other numbers than in a
  batch padded past 16 (max |Δ| 0.04 on MiniLM). ``run`` therefore pads the sequence dimension of an
  int8 batch to at least 16 (masked padding, sliced off the output): every text takes the quantized path
  whatever its batch, and int8 is batch-invariant (measured bit-identical, batch 1 vs 32, on Zen 4;
  ``bertrt tune`` checks it on each machine). The per-token int8
  ONNX graph (``model.int8.onnx``) is not used: OpenVINO's ONNX frontend does not convert its
  ``ReduceMax``/``MatMulIntegerToFloat`` nodes.

A bundle exported with ``--openvino-ir`` also holds OpenVINO IR files (``model.openvino.xml``/``.bin``:
fp32; ``model.openvino-int8.xml``/``.bin``: the same nncf int8 weights, made at export). The loader
(:func:`bertrt.bundle.load_bundle` with ``backend="openvino"``: :mod:`bertrt.backends.openvino`) picks the one
the manifest records, verified by sha256, and the session reads it instead of converting ``model.onnx``;
an IR whose weights nncf already compressed (its ``nncf/weight_compression`` rt_info) is not compressed
again. ``source`` says which kind of file was read: ``"onnx"``, ``"ir"`` (fp32 weights) or ``"ir-int8"``.

Thread safety: an OpenVINO infer request holds its own input and output tensors, so one may not be shared
by concurrent calls. ``run`` takes a request from a pool (a new one when all are busy), copies the output
out of it and puts it back: calls from any number of threads are safe.

``openvino`` (and ``nncf`` for int8) are imported here, when a session is created, never at
``import bertrt``; a missing one is a :class:`~bertrt.errors.BackendError` naming the extra.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from pathlib import Path

import numpy as np

from .errors import BackendError, BundleError, InputError
from .session import GraphIO

__all__ = [
    "DYNAMIC_QUANTIZATION_GROUP_SIZE",
    "INT8_MIN_SEQUENCE",
    "INT8_WEIGHT_MODE",
    "OPENVINO_PRECISIONS",
    "OpenVinoSession",
    "compress_int8_weights",
    "import_openvino",
    "is_weight_compressed",
]

log = logging.getLogger("bertrt")

#: bertrt precision -> OpenVINO INFERENCE_PRECISION_HINT
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
#: input channels per activation scale of the int8 precision's dynamic quantization (OpenVINO's default)
DYNAMIC_QUANTIZATION_GROUP_SIZE = 32
#: the shortest sequence whose activations OpenVINO's CPU plugin quantizes dynamically (measured: 16 on
#: OpenVINO 2026.x); int8 batches are padded to it so that every text runs the same path
INT8_MIN_SEQUENCE = 16
# OpenVINO element type name -> the ONNX type string OnnxSession reports for the same input.
_ONNX_TYPES = {"i64": "tensor(int64)", "i32": "tensor(int32)", "f32": "tensor(float)"}
#: nncf.CompressWeightsMode of the int8 precision's weights: symmetric int8, one scale per output channel
INT8_WEIGHT_MODE = "INT8_SYM"
_INSTALL = "pip install 'bertrt[openvino]'"
_COMPRESSED_RT_INFO = ["nncf", "weight_compression"]


def import_openvino():
    """The ``openvino`` module; BackendError naming the extra when it is not installed."""
    try:
        import openvino
    except ImportError as exc:
        raise BackendError(
            f"backend 'openvino' needs the openvino package, which is not installed ({exc}): {_INSTALL}"
        ) from exc
    return openvino


def _import_nncf():
    try:
        import nncf
    except ImportError as exc:
        raise BackendError(
            f"precision 'int8' on backend 'openvino' compresses the weights with nncf, which is not "
            f"installed ({exc}): {_INSTALL}, or use precision 'fp32' / 'bf16', or backend 'onnxruntime'"
        ) from exc
    # nncf reports each compression with a table and a progress bar; keep them out of library output.
    logging.getLogger("nncf").setLevel(logging.ERROR)
    return nncf


def compress_int8_weights(model):
    """``model`` (an ``openvino.Model``) with its weights compressed by nncf as the int8 precision runs
    them (:data:`INT8_WEIGHT_MODE`, data-free); the exporter's int8 IR is made by this same call."""
    nncf = _import_nncf()
    # nncf draws a progress bar on stdout (rich, not logging): kept out of the caller's output.
    with contextlib.redirect_stdout(io.StringIO()):
        return nncf.compress_weights(model, mode=getattr(nncf.CompressWeightsMode, INT8_WEIGHT_MODE))


def is_weight_compressed(model) -> bool:
    """Whether nncf already compressed ``model``'s weights (an int8 IR saved after ``compress_weights``)."""
    return bool(model.has_rt_info(_COMPRESSED_RT_INFO))


def _pad_sequence(feed: dict[str, np.ndarray], minimum: int) -> tuple[dict[str, np.ndarray], int | None]:
    """``feed`` with its (batch, sequence) inputs padded right with zeros (attention mask 0: padding no
    token attends to) to ``minimum`` tokens, and the original length; ``(feed, None)`` when long enough."""
    length = next((a.shape[1] for a in feed.values() if a.ndim == 2), None)
    if length is None or length >= minimum:
        return feed, None
    return {
        name: np.pad(a, ((0, 0), (0, minimum - length))) if a.ndim == 2 else a for name, a in feed.items()
    }, length


def _shape(partial_shape) -> list:
    """Declared output shape as OnnxSession gives it: ints for fixed dimensions, names for dynamic ones."""
    return [dim.get_length() if dim.is_static else f"dim{i}" for i, dim in enumerate(partial_shape)]


class OpenVinoSession(GraphIO):
    """One compiled OpenVINO model with :class:`~bertrt.session.OnnxSession`'s interface: ``inputs``,
    ``input_dtypes``, ``outputs``, ``output_names``, ``select_output``, ``feed``, ``run`` and ``threads``.

    ``precision``: "fp32", "bf16" or "int8" (see the module docstring). The CPU check for bf16 is the
    caller's (:func:`bertrt.backends.check_available`); OpenVINO itself would fall back silently.
    """

    backend = "openvino"

    def __init__(
        self,
        model_path,
        threads: int | None = None,
        precision: str = "fp32",
        output_name: str | None = None,
    ):
        ov = import_openvino()
        self.model_path = Path(model_path)
        if precision not in OPENVINO_PRECISIONS:
            raise InputError(
                f"precision {precision!r} is not one OpenVINO runs; expected one of "
                f"{', '.join(OPENVINO_PRECISIONS)}"
            )
        self.precision = precision
        self.threads = self.resolve_threads(threads)
        self.providers = ["OpenVINO CPU"]
        core = ov.Core()
        try:
            model = core.read_model(str(self.model_path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses for files it cannot convert
            raise BundleError(
                self.model_path,
                f"OpenVINO cannot read this model ({' '.join(str(exc).split())}); use backend='onnxruntime'",
            ) from exc
        compressed = is_weight_compressed(model)
        #: which kind of file was read: "onnx" (converted at load), "ir" or "ir-int8" (an OpenVINO IR)
        self.source = (
            "onnx" if self.model_path.suffix.lower() != ".xml" else ("ir-int8" if compressed else "ir")
        )
        if compressed and precision != "int8":
            raise InputError(
                f"{self.model_path.name} holds int8-compressed weights; precision {precision!r} needs the "
                f"fp32 weights (model.onnx or model.openvino.xml), or use precision 'int8'"
            )
        #: whether nncf compressed the weights here, at load (int8 from model.onnx or an fp32 IR)
        self.compressed_at_load = precision == "int8" and not compressed
        if self.compressed_at_load:
            model = compress_int8_weights(model)
        config = {
            "INFERENCE_NUM_THREADS": self.threads,
            "INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision],
            # One batch at a time per call, as onnxruntime's sequential session runs it.
            "PERFORMANCE_HINT": "LATENCY",
        }
        if precision == "int8":
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = DYNAMIC_QUANTIZATION_GROUP_SIZE
        try:
            self._compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:
            raise BundleError(
                self.model_path,
                f"OpenVINO cannot compile this model ({' '.join(str(exc).split())}); use backend='onnxruntime'",
            ) from exc

        problems = self.declare_inputs(
            {
                port.get_any_name(): _ONNX_TYPES.get(
                    port.get_element_type().get_type_name(), str(port.get_element_type())
                )
                for port in model.inputs
            }
        )
        # Output names from the model as read (the ONNX graph's names); compiling may merge tensor names.
        self._ports = {}
        self.outputs = {}
        for index, port in enumerate(model.outputs):
            name = port.get_any_name()
            self._ports[name] = index
            self.outputs[name] = _shape(port.get_partial_shape())
        self.output_names = list(self.outputs)
        self.output_name: str | None = None
        self.output_shape: list | None = None
        if problems:
            raise BundleError(self.model_path, "; ".join(problems))
        self._pool: list = []
        self._lock = threading.Lock()
        log.info(
            "openvino session %s (%s%s): %s (hint %s), %d threads, inputs %s, outputs %s",
            self.model_path.name,
            {"onnx": "ONNX graph", "ir": "OpenVINO IR", "ir-int8": "OpenVINO IR, int8 weights"}[self.source],
            ", int8 weights compressed at load" if self.compressed_at_load else "",
            precision,
            OPENVINO_PRECISIONS[precision],
            self.threads,
            list(self.inputs),
            self.output_names,
        )
        if output_name is not None:
            self.select_output(output_name)

    @property
    def inference_precision(self) -> str:
        """The precision the compiled model runs at, as OpenVINO reports it ("f32", "bf16")."""
        return self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """The selected output for a padded batch (a copy: the request's buffer is reused)."""
        if self.output_name is None:
            raise RuntimeError("OpenVinoSession.run before select_output(): name the output to read")
        feed, length = self.feed(batch), None
        if self.precision == "int8":
            feed, length = _pad_sequence(feed, INT8_MIN_SEQUENCE)
        with self._lock:
            request = self._pool.pop() if self._pool else self._compiled.create_infer_request()
        try:
            request.infer(feed)
            out = self.assemble(
                [np.array(request.get_output_tensor(self._ports[n]).data, copy=True) for n in self.fetched]
            )
            # a per-token output (batch, sequence, ...) loses the padding again
            return np.ascontiguousarray(out[:, :length]) if length is not None and out.ndim >= 3 else out
        finally:
            with self._lock:
                self._pool.append(request)
