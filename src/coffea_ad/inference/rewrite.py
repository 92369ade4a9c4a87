"""ONNX graph rewrites applied to a model before ONNX Runtime loads it on the CPU.

Two rewrites, each the same function computed by kernels ONNX Runtime's CPU provider runs
faster, both measured with ``benchmarks/bench_inference.py``:

**Elu.** ONNX Runtime's CPU ``Elu`` kernel evaluates its exponential one element at a time,
while its ``Exp`` kernel is vectorized. For the dense autoencoders this project ships (ELU
after every hidden layer), ``Elu`` was about 60 % of the session's time; the same function
written as

    Elu(x; α) = Max(x, α (Exp(Min(x, 0)) - 1))            for α ≤ 1,
              = Where(x > 0, x, α (Exp(Min(x, 0)) - 1))    for α > 1,

runs 1.5x faster on the whole model. For α ≤ 1 the Max form is exact because
α (eˣ - 1) ≥ x for every x ≤ 0 (equality at 0) and α (e⁰ - 1) = 0 ≤ x for x > 0. The results
differ from ``Elu`` only by the rounding of the vectorized ``eˣ`` (≤ 1 ulp; max relative
score change 2.7e-7 on the benchmark's AE).

**Per-feature affine chains.** A model that standardizes its input in the graph does
``Sub(x, centre)`` then ``Div(·, scale)`` on ``[n, F]`` rows with ``[F]`` constants. ONNX
Runtime broadcasts such a row vector one row at a time (a loop over F = 6 elements), so these
two nodes took about a quarter of the shipped dense AE's time, more than all its Gemms. A
chain of ``Add``/``Sub``/``Mul``/``Div`` by constants on a rank-2 float32 tensor is one
affine map per feature, ``y = a ⊙ x + b``, and is run as a single ``Gemm(x, diag(a), b)``:
1.33x faster on the whole model. ``a`` and ``b`` are computed in float64 and rounded once, so
the results differ from the chain by a few float32 ulps of ``|a x|`` and ``|b|`` (max relative
score change 8.5e-7 on the benchmark's AE). In the Gemm a non-finite feature makes its whole
row non-finite (``inf * 0``), where the chain kept it to that feature; either way the row's
score is not finite, which the scorer flags or refuses.

The rewrites run in memory on the model's bytes: the file, its sha256 (what the contract and
the run record hold) and the model as written are unchanged, and
``graph_optimization="disable"`` runs the model exactly as written.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coffea_ad._optional import require

__all__ = ["fold_row_affine", "rewrite_for_cpu", "vectorize_elu"]

#: ``Max`` and ``Min`` broadcast from opset 8, ``Where`` exists from opset 9.
_MIN_OPSET = 9

#: ``Gemm`` broadcasts its bias ``C`` from opset 7.
_MIN_OPSET_GEMM = 7

#: Widest rows folded into a ``Gemm``: its diagonal matrix costs F multiply-adds per value
#: where the chain costs one per node, so wide rows stay with the chain.
_MAX_AFFINE_FEATURES = 64

_AFFINE_OPS = ("Add", "Sub", "Mul", "Div")


def vectorize_elu(model_bytes: bytes) -> bytes | None:
    """``model_bytes`` with every float32 ``Elu`` node of the main graph written with ``Exp``,
    ``Min``, ``Sub``, ``Mul`` and ``Max`` (or ``Where``), or ``None`` when there is nothing to
    rewrite (no such node, or a default-domain opset below 9).

    Args:
        model_bytes: a serialized ``onnx.ModelProto``.

    Returns:
        The rewritten serialized model, or ``None``.
    """
    return _apply(model_bytes, _vectorize_elu)


def fold_row_affine(model_bytes: bytes) -> bytes | None:
    """``model_bytes`` with every chain of ``Add``/``Sub``/``Mul``/``Div`` by per-feature
    constants on a rank-2 float32 tensor run as one ``Gemm`` with a diagonal matrix, or
    ``None`` when there is no such chain (see the module docstring for when and why).

    A chain starts at a node whose constant is a row vector (``[F]`` or ``[1, F]``; a chain
    of scalars alone is fast already), takes in the next affine node while its input has no
    other use and is not a graph output, and stops at anything else (``Div(c, x)`` included:
    not affine).

    Args:
        model_bytes: a serialized ``onnx.ModelProto``.

    Returns:
        The rewritten serialized model, or ``None``.
    """
    return _apply(model_bytes, _fold_row_affine)


def rewrite_for_cpu(model_bytes: bytes) -> bytes | None:
    """Both rewrites (affine chains, then Elu) on one parse of the model, or ``None`` when
    neither changes it: what the scorer's CPU sessions load."""
    return _apply(model_bytes, _fold_row_affine, _vectorize_elu)


def _apply(model_bytes: bytes, *passes: Any) -> bytes | None:
    onnx = require("onnx", purpose="ONNX graph rewrites")
    model = onnx.load_from_string(model_bytes)
    changed = False
    for rewrite in passes:
        changed = rewrite(model) or changed
    return model.SerializeToString() if changed else None


def _default_opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _fresh_names(graph: Any) -> Any:
    """A function giving names not yet used in ``graph`` (initializers, node values)."""
    taken = {i.name for i in graph.initializer} | {v for n in graph.node for v in
                                                   (*n.input, *n.output)}
    taken |= {v.name for v in (*graph.input, *graph.output)}

    def fresh(stem: str) -> str:
        name, k = stem, 0
        while name in taken:
            k += 1
            name = f"{stem}_{k}"
        taken.add(name)
        return name

    return fresh


def _vectorize_elu(model: Any) -> bool:
    from onnx import helper, numpy_helper

    graph = model.graph
    if not any(node.op_type == "Elu" and node.domain in ("", "ai.onnx") for node in graph.node):
        return False
    if _default_opset(model) < _MIN_OPSET:
        return False
    float32 = _float32_tensors(model)
    fresh = _fresh_names(graph)

    def constant(stem: str, value: float) -> str:
        name = fresh(stem)
        graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), name))
        return name

    zero = one = None
    nodes: list[Any] = []
    changed = False
    for node in graph.node:
        if node.op_type != "Elu" or node.domain not in ("", "ai.onnx") or \
                node.input[0] not in float32:
            nodes.append(node)
            continue
        alpha = next((a.f for a in node.attribute if a.name == "alpha"), 1.0)
        x, y = node.input[0], node.output[0]
        stem = node.name or y
        zero = zero or constant("coffea_ad_elu_zero", 0.0)
        one = one or constant("coffea_ad_elu_one", 1.0)
        neg, exp, em1 = fresh(f"{stem}/min"), fresh(f"{stem}/exp"), fresh(f"{stem}/expm1")
        nodes += [helper.make_node("Min", [x, zero], [neg], name=neg),
                  helper.make_node("Exp", [neg], [exp], name=exp),
                  helper.make_node("Sub", [exp, one], [em1], name=em1)]
        if alpha != 1.0:
            scaled = fresh(f"{stem}/alpha")
            nodes.append(helper.make_node("Mul", [em1, constant(f"{stem}/alpha_value", alpha)],
                                          [scaled], name=scaled))
            em1 = scaled
        if alpha <= 1.0:
            nodes.append(helper.make_node("Max", [x, em1], [y], name=fresh(f"{stem}/max")))
        else:  # α (eˣ - 1) < x just below 0: pick the branch explicitly
            positive = fresh(f"{stem}/positive")
            nodes += [helper.make_node("Greater", [x, zero], [positive], name=positive),
                      helper.make_node("Where", [positive, x, em1], [y],
                                       name=fresh(f"{stem}/where"))]
        changed = True
    if not changed:
        return False
    del graph.node[:]
    graph.node.extend(nodes)
    return True


def _fold_row_affine(model: Any) -> bool:
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    if not any(node.op_type in _AFFINE_OPS for node in graph.node):
        return False
    if _default_opset(model) < _MIN_OPSET_GEMM or _has_subgraphs(graph):
        return False  # a subgraph may read a chain's inner values, which the fold removes
    shapes = _float32_shapes(model)
    overridable = {v.name for v in graph.input}  # an initializer listed as input may be fed
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer
                 if i.data_type == TensorProto.FLOAT and i.name not in overridable}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    outputs = {v.name for v in graph.output}

    def affine_step(node: Any, x: str | None) -> tuple[str, bool, bool, np.ndarray] | None:
        """(input, constant is a row, constant comes first, constant as float64 [F]) when
        ``node`` is an affine step on a rank-2 float32 tensor (``x``, when given) by a
        per-feature or scalar constant that leaves the tensor's shape as it is."""
        if node.op_type not in _AFFINE_OPS or node.domain not in ("", "ai.onnx") or \
                len(node.input) != 2:
            return None
        for pos in (0, 1):
            var, const = node.input[pos], node.input[1 - pos]
            if const not in constants or (x is not None and var != x):
                continue
            shape = shapes.get(var)
            if shape is None or len(shape) != 2 or not isinstance(shape[1], int) or \
                    not 0 < shape[1] <= _MAX_AFFINE_FEATURES:
                return None
            c = constants[const].astype(np.float64)
            if c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1) or c.size not in (1, shape[1]):
                return None
            if node.op_type == "Div" and (pos == 1 or not np.all(np.isfinite(c)) or
                                          not np.all(np.abs(c) > np.finfo(np.float32).tiny)):
                return None  # c / x is not affine; x / 0 is left to ONNX Runtime
            return var, c.size > 1, pos == 1, np.broadcast_to(c.reshape(-1), (shape[1],))
        return None

    fresh = _fresh_names(graph)
    nodes = list(graph.node)
    absorbed: set[int] = set()
    replacements: dict[int, Any] = {}
    for start, node in enumerate(nodes):
        step = affine_step(node, None) if start not in absorbed else None
        if step is None:
            continue
        x = step[0]
        width = int(shapes[x][1])  # type: ignore[arg-type]  # affine_step checked it
        a, b = np.ones(width), np.zeros(width)
        chain: list[int] = []
        rows = False
        k, current = start, x
        while k < len(nodes):
            step = affine_step(nodes[k], current)
            if step is None:
                break
            _, row, first, c = step
            op = nodes[k].op_type
            if op == "Add":
                b = b + c
            elif op == "Sub" and first:  # c - x
                a, b = -a, c - b
            elif op == "Sub":
                b = b - c
            elif op == "Mul":
                a, b = a * c, b * c
            else:  # x / c
                a, b = a / c, b / c
            rows = rows or row
            chain.append(k)
            current = nodes[k].output[0]
            if uses.get(current, 0) != 1 or current in outputs:
                break
            k = next((j for j in range(k + 1, len(nodes)) if current in nodes[j].input),
                     len(nodes))
        if not rows or not np.all(np.isfinite(a)) or not np.all(np.isfinite(b)):
            continue  # scalar chains broadcast fast already
        stem = fresh(f"{nodes[chain[0]].name or current}/affine")
        weight, bias = fresh(f"{stem}_diag"), fresh(f"{stem}_offset")
        graph.initializer.extend([
            numpy_helper.from_array(np.diag(a).astype(np.float32), weight),
            numpy_helper.from_array(b.astype(np.float32), bias)])
        replacements[chain[0]] = helper.make_node("Gemm", [x, weight, bias], [current],
                                                  name=stem)
        absorbed.update(chain)
    if not replacements:
        return False
    kept = [replacements.get(k, n) for k, n in enumerate(nodes)
            if k in replacements or k not in absorbed]
    del graph.node[:]
    graph.node.extend(kept)
    # the folded constants nothing reads any more (ONNX Runtime would warn about each)
    read = {name for node in kept for name in node.input} | outputs | overridable
    unused = [i for i in graph.initializer if i.name not in read]
    for init in unused:
        graph.initializer.remove(init)
    return True


def _has_subgraphs(graph: Any) -> bool:
    from onnx import AttributeProto

    return any(attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS)
               for node in graph.node for attr in node.attribute)


def _float32_tensors(model: Any) -> set[str]:
    """Names of the main graph's float32 tensors (inputs, initializers, inferred values)."""
    from onnx import TensorProto

    graph = _inferred(model).graph
    names = {i.name for i in graph.initializer if i.data_type == TensorProto.FLOAT}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            names.add(value.name)
    return names


def _float32_shapes(model: Any) -> dict[str, tuple[int | str | None, ...]]:
    """Shapes of the main graph's float32 values whose rank is known: a static dimension as
    an int, a named one as its name, an unknown one as None."""
    from onnx import TensorProto

    graph = _inferred(model).graph
    shapes: dict[str, tuple[int | str | None, ...]] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        tensor = value.type.tensor_type
        if tensor.elem_type != TensorProto.FLOAT or not tensor.HasField("shape"):
            continue
        shapes[value.name] = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in tensor.shape.dim)
    return shapes


def _inferred(model: Any) -> Any:
    onnx = require("onnx", purpose="ONNX graph rewrites")
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference is best effort: only the declared types
        return model
