"""Session stage: one onnxruntime InferenceSession per pipeline, and feeds built from its metadata.

onnxruntime is imported here, when a session is created, never at ``import bertrt``.

On an accelerator (``providers="cuda"``) the session runs with IO binding: each batch's inputs are copied
to the device once, the output is bound on the device and copied back once, and nothing else crosses the
bus (the fp16 graph keeps float32 inputs and outputs, so the runtime's arrays are unchanged). The same
path runs on the CPU provider with ``io_binding=True`` (how CI exercises it).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .cpu import physical_cores
from .errors import BackendError, BundleError, InputError

# physical_cores: re-exported from bertrt.cpu (its home), where benchmarks have always imported it
__all__ = [
    "GraphIO",
    "OnnxSession",
    "binding_device",
    "physical_cores",
    "resolve_providers",
    "session_options",
]

log = logging.getLogger("bertrt")

#: the onnxruntime distributions that ship a CUDA provider (never installed beside plain onnxruntime)
_GPU_DISTRIBUTIONS = ("onnxruntime-gpu",)
# provider -> the device type IO binding places tensors on
_BINDING_DEVICES = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}

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


def session_options(threads: int | None = None, spinning: bool | None = None):
    """SessionOptions for an already-optimized graph served with varying batch and sequence shapes.

    - graph optimization: ORT_ENABLE_ALL. On the exporter's fused graph re-optimizing is a no-op at
      load time (measured ms), and on foreign, unfused graphs (Optimum, transformers.js) it fuses
      attention/LayerNorm/GELU, which is what makes them fast.
    - memory pattern off: its plan is keyed by input shape and every batch has a new one.
    - intra-op threads: physical cores (hyper-threads slow GEMMs down); inter-op 1, sequential.
    - ``spinning``: onnxruntime's ``session.intra_op.allow_spinning`` (None: its default, on). Off, idle
      pool threads sleep instead of spinning: what a process sharing its cores with others wants
      (docs/speed.md has the measurements).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_mem_pattern = False
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = int(threads) if threads else physical_cores()
    options.inter_op_num_threads = 1
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
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
        hint = _cuda_hint() if "CUDAExecutionProvider" in missing else ""
        raise InputError(
            f"execution provider(s) {', '.join(missing)} not available{hint}; "
            f"available: {', '.join(available)}"
        )
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")  # fallback for nodes the accelerator lacks
    return names


def _cuda_hint() -> str:
    """Why CUDA is missing, as far as the installed distributions tell: no GPU package, or both packages
    (the CPU one's files shadow the GPU one's)."""
    from .cpu import installed_versions

    versions = installed_versions(("onnxruntime", *_GPU_DISTRIBUTIONS))
    gpu = [name for name in _GPU_DISTRIBUTIONS if versions.get(name)]
    if gpu and versions.get("onnxruntime"):
        return (
            f" (both onnxruntime and {gpu[0]} are installed and the CPU package shadows the GPU one: "
            f"pip uninstall -y onnxruntime {gpu[0]} && pip install 'bertrt[gpu]')"
        )
    if gpu:
        return f" ({gpu[0]} is installed but its CUDA provider is not listed: check the CUDA install)"
    return " (install onnxruntime-gpu in place of onnxruntime: pip uninstall -y onnxruntime && pip install 'bertrt[gpu]')"


def binding_device(providers: list[str]) -> str:
    """The device type IO binding uses for the first provider of ``providers`` ("cuda" or "cpu")."""
    return _BINDING_DEVICES.get(providers[0], "cpu") if providers else "cpu"


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

    #: the graph outputs ``run`` stacks on a new last axis as the selected output (a graph that keeps
    #: them apart, as Optimum exports question answering's start_logits and end_logits); empty: one output
    stacked: tuple[str, ...] = ()

    def select_output(self, name: str, stacked: tuple[str, ...] = ()) -> None:
        """Make ``run`` return the output ``name`` or, with ``stacked``, the graph outputs ``stacked`` stacked
        on a new last axis under that name; BundleError when the graph has no output of a name read."""
        for wanted in stacked or (name,):
            if wanted not in self.outputs:
                declared = ", ".join(f"{n} {shape}" for n, shape in self.outputs.items()) or "none"
                raise BundleError(
                    self.model_path, f"the graph has no output {wanted!r} (its outputs: {declared})"
                )
        self.output_name = name
        self.stacked = tuple(stacked)
        shape = list(self.outputs[stacked[0] if stacked else name])
        self.output_shape = [*shape, len(stacked)] if stacked else shape

    @property
    def fetched(self) -> list[str]:
        """The graph outputs one run reads: the selected one, or those it stacks."""
        return list(self.stacked) or [self.output_name]

    def assemble(self, arrays: list) -> np.ndarray:
        """The selected output from the :attr:`fetched` arrays of one run."""
        return np.stack(arrays, axis=-1) if self.stacked else arrays[0]

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
    ``io_binding``: run through IO binding (module docstring); None (default): when the first provider is
    an accelerator. ``spinning``: the intra-op pool's spinning (:func:`session_options`).
    """

    def __init__(
        self,
        model_path,
        threads: int | None = None,
        providers=None,
        output_name: str | None = None,
        io_binding: bool | None = None,
        spinning: bool | None = None,
    ):
        import onnxruntime as ort

        self.model_path = Path(model_path)
        self.providers = resolve_providers(providers)
        self.threads = self.resolve_threads(threads)
        #: the device type inputs and outputs are bound on ("cuda", "cpu"); None: plain ``run``
        self.device = binding_device(self.providers)
        if io_binding is None:
            io_binding = self.device != "cpu"
        if not io_binding:
            self.device = None
        try:
            self._session = ort.InferenceSession(
                str(self.model_path),
                sess_options=session_options(self.threads, spinning),
                providers=self.providers,
                disabled_optimizers=DISABLED_OPTIMIZERS,
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad / truncated files
            raise BundleError(self.model_path, f"onnxruntime cannot load this model ({exc})") from exc
        dropped = [p for p in self.providers if p not in self._session.get_providers()]
        if dropped:  # onnxruntime falls back to the CPU with a log line when CUDA cannot start
            raise BackendError(
                f"onnxruntime could not start {', '.join(dropped)} for {self.model_path.name} (the CUDA / "
                f"cuDNN libraries onnxruntime-gpu needs, or a visible GPU, are missing?); the session got "
                f"{', '.join(self._session.get_providers())}"
            )
        problems = self.declare_inputs({i.name: i.type for i in self._session.get_inputs()})
        self.outputs = {o.name: list(o.shape) for o in self._session.get_outputs()}
        self.output_names = list(self.outputs)
        #: the output ``run`` returns, and its declared shape; None until one is selected
        self.output_name: str | None = None
        self.output_shape: list | None = None
        if problems:
            raise BundleError(self.model_path, "; ".join(problems))
        log.info(
            "session %s: providers %s (IO binding: %s), %d intra-op threads, inputs %s, outputs %s",
            self.model_path.name,
            self.providers,
            self.device or "off",
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
        if self.device is None:
            return self.assemble(self._session.run(self.fetched, self.feed(batch)))
        return self._run_bound(self.feed(batch))

    def _run_bound(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """One run through IO binding: inputs copied to the device once, the output copied back once.
        A binding per call, so concurrent calls share nothing but the session."""
        binding = self._session.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, array)
        for name in self.fetched:
            binding.bind_output(name, self.device)
        self._session.run_with_iobinding(binding)
        return self.assemble(binding.copy_outputs_to_cpu())
