"""Constant folding at export: subgraphs that read only initializers become initializers.

Why (DeBERTa-v2/v3): the disentangled attention projects the relative-position embeddings with each
layer's query and key weights, ``query_proj(LayerNorm(rel_embeddings))[:2 * span]``, on every run,
though no input reaches it. onnxruntime folds these at load in the fp32 graph, but the per-token int8
rewrite (:mod:`bertrt.export.per_token`) saw two more constant-weight MatMuls per layer and turned them
into quantize + MatMulIntegerToFloat chains, which onnxruntime does not fold: 2 x [2 * span, D] x [D, D]
GEMMs per layer per call, more work than the whole text at batch 1, and quantization error on the
position terms for nothing. Folded here, before quantization, the position projections are fp32
initializers computed once by the same onnxruntime kernels.

The values are computed by onnxruntime (no graph optimization, CPU) on a model holding only the
constant nodes; a folded tensor is only kept when it is at most :data:`MAX_FOLD_BYTES`. Nodes with
subgraphs (If, Loop) and non-default domains are never folded.
"""

from __future__ import annotations

import logging

__all__ = ["MAX_FOLD_BYTES", "drop_dead", "fold_constants", "splice"]

log = logging.getLogger("bertrt.export")

#: a folded tensor larger than this stays computed (an Expand of a constant could blow up the file)
MAX_FOLD_BYTES = 16 * 1024 * 1024


def _foldable(node) -> bool:
    from onnx import AttributeProto

    if node.domain not in ("", "ai.onnx") or node.op_type in ("Constant", "RandomNormal", "RandomUniform"):
        return False
    return not any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for a in node.attribute)


def fold_constants(model) -> int:
    """Replace, in place, each computed tensor of ``model`` (an ``onnx.ModelProto``) that depends on
    initializers and ``Constant`` nodes only, and feeds a node that does not, by an initializer; drop
    the nodes nothing reads any more. Returns how many tensors were folded."""
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    graph = model.graph
    const = {i.name for i in graph.initializer} | {""}
    producer, folded_nodes = {}, []
    for node in graph.node:
        for out in node.output:
            producer[out] = node
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            const.update(node.output)
        elif _foldable(node) and all(i in const for i in node.input):
            const.update(node.output)
            folded_nodes.append(node)
    computed = {o for n in folded_nodes for o in n.output}
    graph_outputs = {o.name for o in graph.output}
    frontier = []
    for node in graph.node:
        if node in folded_nodes or (node.op_type == "Constant" and node.domain in ("", "ai.onnx")):
            continue
        frontier += [i for i in node.input if i in computed and i not in frontier]
    frontier += [o for o in graph_outputs if o in computed and o not in frontier]
    if not frontier:
        return 0
    nodes = [n for n in graph.node if n.op_type == "Constant" or n in folded_nodes]
    read = {i for n in nodes for i in n.input}
    sub = helper.make_graph(
        nodes,
        "bertrt_fold",
        [],
        [helper.make_empty_tensor_value_info(name) for name in frontier],
        initializer=[i for i in graph.initializer if i.name in read],
    )
    probe = helper.make_model(sub, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3  # the probe's unused initializers are expected
    session = ort.InferenceSession(
        probe.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
    )
    values = dict(zip(frontier, session.run(frontier, {}), strict=True))
    kept = {name: v for name, v in values.items() if v.nbytes <= MAX_FOLD_BYTES}
    for name, value in values.items():
        if name not in kept:
            log.info("fold: %s (%.1f MB) left computed", name, value.nbytes / 1e6)
    # graph outputs keep their producer (an output cannot be an initializer in every onnx version)
    kept = {name: v for name, v in kept.items() if name not in graph_outputs}
    graph.initializer.extend(numpy_helper.from_array(v, name) for name, v in kept.items())
    drop_dead(graph)
    log.info("fold: %d constant tensors folded into initializers", len(kept))
    return len(kept)


def _reads(node) -> set[str]:
    """The tensors ``node`` reads, including those its subgraphs (If/Loop bodies) read from outer scope."""
    from onnx import AttributeProto

    names = set(node.input)
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == AttributeProto.GRAPH else list(attr.graphs)
        for sub in graphs:
            for inner in sub.node:
                names |= _reads(inner)
    return names


def drop_dead(graph) -> None:
    """Remove nodes whose outputs nothing reads, and initializers nothing reads (repeated to a fixpoint)."""
    produced_inits = {i.name for i in graph.initializer}
    while True:
        needed = {o.name for o in graph.output}
        for node in graph.node:
            needed |= _reads(node)
        live = []
        for node in graph.node:
            outputs = [o for o in node.output if o]
            # a node whose outputs were all folded into initializers is dead too
            if any(o in needed and o not in produced_inits for o in outputs):
                live.append(node)
        if len(live) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(live)
    needed = {o.name for o in graph.output}.union(*(_reads(n) for n in graph.node))
    keep = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def splice(graph, replace: dict, skip=frozenset()) -> None:
    """Rewrite ``graph.node`` in place: node ``i`` becomes the nodes ``replace[i]`` (in order), the nodes
    whose ``id`` is in ``skip`` go, then the nodes nothing reads any more (:func:`drop_dead`)."""
    nodes = []
    for index, node in enumerate(graph.node):
        if id(node) not in skip:
            nodes.extend(replace.get(index, [node]))
    del graph.node[:]
    graph.node.extend(nodes)
    drop_dead(graph)
