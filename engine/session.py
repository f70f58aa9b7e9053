"""Session stage: one onnxruntime InferenceSession per pipeline, and feeds built from its metadata.

onnxruntime is imported here, when a session is created, never at ``import bertrt``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .cpu import physical_cores
from .errors import BundleError, InputError

# physical_cores: re-exported from bertrt.cpu (its home), where benchmarks have always imported it
__all__ = ["GraphIO", "OnnxSession", "physical_cores", "resolve_providers", "session_options"]

log = logging.getLogger("bertrt")

# ONNX tensor type -> numpy dtype, for the inputs a BERT-family graph declares.
_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32}
# Inputs the runtime can provide (from the padded batch).
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


#: onnxruntime graph transformers never run at load time. SkipLayerNormFusion: the exporter splits
#: SkipLayerNormalization into Add + LayerNormalization on purpose (its CPU kernel is 2.5x slower than the
#: three standard ones, export/optimize.py); the fusion must not undo that, here or on a foreign graph.
DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]


def session_options(threads: int | None = None):
    """SessionOptions for an already-optimized graph served with varying batch and sequence shapes.

    - graph optimization: ORT_ENABLE_ALL. On the exporter's fused graph re-optimizing is a no-op at
      load time (measured ms), and on foreign, unfused graphs (Optimum, transformers.js) it fuses
      attention/LayerNorm/GELU, which is what makes them fast.
    - memory pattern off: its plan is keyed by input shape and every batch has a new one.
    - intra-op threads: physical cores (hyper-threads slow GEMMs down); inter-op 1, sequential.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_mem_pattern = False
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = int(threads) if threads else physical_cores()
    options.inter_op_num_threads = 1
    return options


def resolve_providers(providers) -> list[str]:
    """Provider names for onnxruntime. None -> CPU. "cuda"/"CUDAExecutionProvider" needs onnxruntime-gpu."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, str):
        providers = [providers]
    names = [_PROVIDER_ALIASES.get(str(p).lower(), str(p)) for p in providers]
    missing = [n for n in names if n not in available]
    if missing:
        hint = (
            " (install onnxruntime-gpu: pip install 'bertrt[gpu]')"
            if "CUDAExecutionProvider" in missing
            else ""
        )
        raise InputError(
            f"execution provider(s) {', '.join(missing)} not available{hint}; "
            f"available: {', '.join(available)}"
        )
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")  # fallback for nodes the accelerator lacks
    return names


class GraphIO:
    """What every backend's session shares (:class:`bertrt.backends.Session`): the graph's declared inputs (``input_dtypes``) and outputs
    (``outputs``: name -> shape), the output ``run`` returns, and the feed built from a padded batch.
    A backend sets ``model_path``, its inputs (:meth:`declare_inputs`), ``outputs`` and ``output_name`` in
    ``__init__``."""

    @staticmethod
    def resolve_threads(threads) -> int:
        """Intra-op threads: ``threads``, or the physical cores when None; InputError for anything else."""
        if threads is None:
            return physical_cores()
        if isinstance(threads, bool) or not isinstance(threads, int) or threads <= 0:
            raise InputError(f"threads must be a positive int or None, got {threads!r}")
        return threads

    def declare_inputs(self, inputs: dict[str, str]) -> list[str]:
        """Record the graph's declared inputs (``inputs``: name -> ONNX type string) and the numpy dtype of
        each one the runtime can feed; return the problems (an input it cannot provide, an unsupported
        type, no ``input_ids``), for the backend to raise with the others in one BundleError."""
        self.inputs = dict(inputs)
        self.input_dtypes, problems = {}, []
        for name, onnx_type in self.inputs.items():
            if name not in KNOWN_INPUTS:
                problems.append(
                    f"input {name!r} is not one the runtime can provide ({', '.join(KNOWN_INPUTS)})"
                )
            elif onnx_type not in _DTYPES:
                problems.append(f"input {name!r} has unsupported type {onnx_type}")
            else:
                self.input_dtypes[name] = _DTYPES[onnx_type]
        if "input_ids" not in self.inputs:
            problems.append("graph has no 'input_ids' input")
        return problems

    def select_output(self, name: str) -> None:
        """Make ``run`` return the output ``name``; BundleError when the graph has no output of that name."""
        if name not in self.outputs:
            declared = ", ".join(f"{n} {shape}" for n, shape in self.outputs.items()) or "none"
            raise BundleError(self.model_path, f"the graph has no output {name!r} (its outputs: {declared})")
        self.output_name = name
        self.output_shape = list(self.outputs[name])

    def feed(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Only the declared inputs, cast to the declared dtypes."""
        return {
            name: np.ascontiguousarray(batch[name], dtype=dtype) for name, dtype in self.input_dtypes.items()
        }


class OnnxSession(GraphIO):
    """One InferenceSession, created here; ``run(batch)`` feeds exactly the inputs the graph declares and
    returns the output selected by name (``output_name=`` or :meth:`select_output`): there is no fallback
    to another output, so a graph without the expected one is refused, never read in its place.

    ``outputs`` maps every graph output to its declared shape (ints, or names for dynamic dimensions).
    """

    def __init__(
        self, model_path, threads: int | None = None, providers=None, output_name: str | None = None
    ):
        import onnxruntime as ort

        self.model_path = Path(model_path)
        self.providers = resolve_providers(providers)
        self.threads = self.resolve_threads(threads)
        try:
            self._session = ort.InferenceSession(
                str(self.model_path),
                sess_options=session_options(self.threads),
                providers=self.providers,
                disabled_optimizers=DISABLED_OPTIMIZERS,
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad / truncated files
            raise BundleError(self.model_path, f"onnxruntime cannot load this model ({exc})") from exc
        problems = self.declare_inputs({i.name: i.type for i in self._session.get_inputs()})
        self.outputs = {o.name: list(o.shape) for o in self._session.get_outputs()}
        self.output_names = list(self.outputs)
        #: the output ``run`` returns, and its declared shape; None until one is selected
        self.output_name: str | None = None
        self.output_shape: list | None = None
        if problems:
            raise BundleError(self.model_path, "; ".join(problems))
        log.info(
            "session %s: providers %s, %d intra-op threads, inputs %s, outputs %s",
            self.model_path.name,
            self.providers,
            self.threads,
            list(self.inputs),
            self.output_names,
        )
        if output_name is not None:
            self.select_output(output_name)

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """The selected output for a padded batch."""
        if self.output_name is None:
            raise RuntimeError("OnnxSession.run before select_output(): name the output to read")
        return self._session.run([self.output_name], self.feed(batch))[0]
