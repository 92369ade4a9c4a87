"""The in-memory ONNX rewrites: Elu into vectorized ops, and per-feature affine chains into one
Gemm. Each is the same function (against the definition written out in numpy in float64 and
against ONNX Runtime on the model as written), applied only where it holds, and what the
scorer runs with them and without them."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from coffea_ad.inference import InputSpec, ModelContract, OnnxScorer, OutputSpec
from coffea_ad.inference.rewrite import fold_row_affine, rewrite_for_cpu, vectorize_elu


def _elu_model(alpha: float | None, *, dtype=TensorProto.FLOAT, opset: int = 17) -> bytes:
    """x -> Elu(x W + b) -> row sum: one Gemm, one Elu, one ReduceSum."""
    np_dtype = np.float32 if dtype == TensorProto.FLOAT else np.float64
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(3, 4)).astype(np_dtype), "w")
    b = numpy_helper.from_array(rng.normal(size=(4,)).astype(np_dtype), "b")
    attrs = {} if alpha is None else {"alpha": alpha}
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"]),
             helper.make_node("Elu", ["h"], ["act"], **attrs),
             helper.make_node("ReduceSum", ["act"], ["score"], keepdims=0, axes=[1])
             if opset < 13 else
             helper.make_node("ReduceSum", ["act", "axes"], ["score"], keepdims=0)]
    inits = [w, b]
    if opset >= 13:
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "axes"))
    graph = helper.make_graph(
        nodes, "elu", [helper.make_tensor_value_info("x", dtype, ["n", 3])],
        [helper.make_tensor_value_info("score", dtype, ["n"]),
         helper.make_tensor_value_info("act", dtype, ["n", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def _run(model: bytes, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})


def _inputs() -> np.ndarray:
    rng = np.random.default_rng(1)
    x = rng.normal(scale=3.0, size=(5000, 3)).astype(np.float32)
    x[:3] = [[0.0, 0.0, 0.0], [-80.0, -90.0, -100.0], [40.0, 50.0, 60.0]]  # 0, e^x -> 0, large
    return x


@pytest.mark.parametrize("alpha", [None, 1.0, 0.5, 2.0])
def test_rewritten_elu_is_the_elu_function(alpha):
    model = _elu_model(alpha)
    rewritten = vectorize_elu(model)
    assert rewritten is not None
    ops = [n.op_type for n in onnx.load_from_string(rewritten).graph.node]
    assert "Elu" not in ops
    assert "Exp" in ops
    x = _inputs()
    (score0, act0), (score1, act1) = _run(model, x), _run(rewritten, x)
    # the definition, in float64 from the Gemm output ONNX Runtime computed
    m = onnx.load_from_string(model)
    w, b = (numpy_helper.to_array(i) for i in m.graph.initializer[:2])
    h = x.astype(np.float64) @ w.astype(np.float64) + b
    a = 1.0 if alpha is None else alpha
    want = np.where(h > 0, h, a * np.expm1(np.minimum(h, 0.0)))
    np.testing.assert_allclose(act1, want, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(act1, act0, rtol=1e-6, atol=1e-6)  # ONNX Runtime's own Elu
    positive = act0 > 0
    np.testing.assert_array_equal(act1[positive], act0[positive])  # x > 0: x itself, exactly
    np.testing.assert_allclose(score1, score0, rtol=1e-6, atol=1e-5)


def test_nothing_to_rewrite_gives_none():
    assert vectorize_elu(_elu_model(1.0, opset=8)) is None  # Where needs opset 9
    assert vectorize_elu(_elu_model(1.0, dtype=TensorProto.DOUBLE)) is None  # float32 only
    model = onnx.load_from_string(_elu_model(1.0))
    for node in model.graph.node:
        if node.op_type == "Elu":
            node.op_type = "Relu"
            del node.attribute[:]
    assert vectorize_elu(model.SerializeToString()) is None


def test_scorer_runs_the_rewrite_on_cpu_and_the_model_as_written_without_optimization(
        tmp_path, monkeypatch):
    from coffea_ad.inference import rewrite

    rewritten: list[bool] = []

    def spy(model: bytes) -> bytes | None:  # the real rewrites, recording that they rewrote
        out = rewrite_for_cpu(model)
        rewritten.append(out is not None)
        return out

    monkeypatch.setattr(rewrite, "rewrite_for_cpu", spy)
    path = tmp_path / "elu.onnx"
    path.write_bytes(_elu_model(1.0))
    ModelContract(name="elu", kind="autoencoder", level="jet", jets="FatJet", opset=17,
                  inputs=[InputSpec("x", ["a", "b", "c"], [3], scaling="none")],
                  outputs=[OutputSpec("score", "score"), OutputSpec("act", "act", [4])],
                  score="score").write(path)
    before = path.read_bytes()
    x = _inputs()
    exact = OnnxScorer(path, graph_optimization="disable", providers=["CPUExecutionProvider"])
    fast = OnnxScorer(path, providers=["CPUExecutionProvider"])
    raw = _run(before, x)
    np.testing.assert_array_equal(exact(x), raw[0])  # as written: bit for bit
    assert rewritten == []  # graph_optimization="disable": the model as written
    got = fast(x)
    assert rewritten == [True]
    np.testing.assert_allclose(got, raw[0], rtol=1e-6, atol=1e-5)
    assert path.read_bytes() == before  # the file (and its sha256) untouched


# ----------------------------------------------------------------- per-feature affine chains
def _chain_model(steps: list[tuple[str, object, bool]], *, width: int = 4, rank: int = 2,
                 extra_use: int | None = None, const_as_input: bool = False,
                 opset: int = 17) -> bytes:
    """x -> the affine ``steps`` (op, constant, constant first) -> Gemm -> y; with the chain's
    end as a second output ``z`` (a standardization feeds the model and the loss), and with
    step ``extra_use``'s result also read by an ``Abs`` output."""
    rng = np.random.default_rng(2)
    shape = ["n", width] if rank == 2 else ["n", 3, width]
    inits, nodes, outputs = [], [], []
    value = "x"
    for k, (op, const, first) in enumerate(steps):
        name = f"c{k}"
        inits.append(numpy_helper.from_array(np.asarray(const, np.float32), name))
        out = f"s{k}"
        nodes.append(helper.make_node(op, [name, value] if first else [value, name], [out],
                                      name=f"step{k}"))
        if extra_use == k:
            nodes.append(helper.make_node("Abs", [out], ["side"]))
            outputs.append(helper.make_tensor_value_info("side", TensorProto.FLOAT, shape))
        value = out
    w = numpy_helper.from_array(rng.normal(size=(width, 2)).astype(np.float32), "w")
    inits.append(w)
    if rank == 2:
        nodes.append(helper.make_node("Gemm", [value, "w"], ["y"]))
        outputs.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2]))
    else:
        nodes.append(helper.make_node("MatMul", [value, "w"], ["y"]))
        outputs.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 2]))
    nodes.append(helper.make_node("Identity", [value], ["z"]))
    outputs.insert(0, helper.make_tensor_value_info("z", TensorProto.FLOAT, shape))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)]
    if const_as_input:  # an initializer that is also a graph input can be fed at run time
        inputs.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT,
                                                    list(np.shape(steps[0][1]))))
    graph = helper.make_graph(nodes, "chain", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def _chain_reference(steps, x: np.ndarray) -> np.ndarray:
    """The chain in float64, one row and one feature at a time."""
    out = np.empty(x.shape, np.float64)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            v = float(x[i, j])
            for op, const, first in steps:
                c = np.asarray(const, np.float64).reshape(-1)
                c = float(c[j] if c.size > 1 else c[0])
                a, b = (c, v) if first else (v, c)
                v = {"Add": a + b, "Sub": a - b, "Mul": a * b, "Div": a / b}[op]
            out[i, j] = v
    return out


def _ops(model: bytes) -> list[str]:
    return [n.op_type for n in onnx.load_from_string(model).graph.node]


CENTRE = [120.0, 0.5, -3.0, 0.01]
SCALE = [60.0, 0.15, 2.0, 0.003]
CHAINS = {
    "standardize": [("Sub", CENTRE, False), ("Div", SCALE, False)],
    "mixed": [("Mul", [[2.0, -1.0, 0.5, 4.0]], False), ("Sub", 3.0, True),
              ("Add", [1.0, 2.0, 3.0, 4.0], True), ("Div", 0.25, False)],
}


@pytest.mark.parametrize("which", sorted(CHAINS))
def test_affine_chain_is_one_gemm_computing_the_same_function(which):
    steps = CHAINS[which]
    model = _chain_model(steps)
    rewritten = fold_row_affine(model)
    assert rewritten is not None
    ops = _ops(rewritten)
    assert ops == ["Gemm", "Gemm", "Identity"]  # the chain is gone, one Gemm in its place
    assert [i.name for i in onnx.load_from_string(rewritten).graph.initializer
            if i.name.startswith("c")] == []  # folded constants dropped, not left unused
    x = np.random.default_rng(3).normal(size=(300, 4)).astype(np.float32)
    x = x * np.float32(50) + np.asarray(CENTRE, np.float32)
    (z0, y0), (z1, y1) = _run(model, x), _run(rewritten, x)
    want = _chain_reference(steps, x)
    # a x + b from float64 a and b rounded once: a few float32 ulps of |a x| + |b|
    m = onnx.load_from_string(rewritten)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    gemm = m.graph.node[0]
    a, b = np.diag(inits[gemm.input[1]]).astype(np.float64), inits[gemm.input[2]]
    bound = 4 * np.finfo(np.float32).eps * (np.abs(a * x) + np.abs(b))
    assert np.all(np.abs(z1 - want) <= bound)
    assert np.all(np.abs(z0 - want) <= bound)  # the chain as written is as close
    np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-4 * float(np.abs(y0).max()))


def test_affine_chain_stops_where_a_value_has_another_reader():
    steps = CHAINS["standardize"]
    model = _chain_model(steps, extra_use=0)  # Sub's result is also an output's input
    rewritten = fold_row_affine(model)
    assert rewritten is not None
    # Sub folded alone (its result is read twice), Div a chain of its own
    assert _ops(rewritten) == ["Gemm", "Abs", "Gemm", "Gemm", "Identity"]
    x = np.random.default_rng(4).normal(size=(200, 4)).astype(np.float32) * 30
    for before, after in zip(_run(model, x), _run(rewritten, x), strict=True):
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("case", ["rank3", "scalars_only", "div_by_zero", "const_over_x",
                                  "opset6"])
def test_affine_chains_left_as_written(case):
    steps = CHAINS["standardize"]
    kwargs = {}
    if case == "rank3":
        kwargs["rank"] = 3  # Gemm takes rank-2 inputs only
    elif case == "scalars_only":
        steps = [("Sub", 1.0, False), ("Mul", 2.0, False)]  # broadcast fast already
    elif case == "div_by_zero":
        steps = [("Div", [1.0, 0.0, 2.0, 3.0], False)]
    elif case == "const_over_x":
        steps = [("Div", [1.0, 5.0, 2.0, 3.0], True)]  # c / x: not affine
    else:
        kwargs["opset"] = 6
    assert fold_row_affine(_chain_model(steps, **kwargs)) is None


def test_affine_chain_keeps_a_constant_the_caller_may_feed():
    steps = CHAINS["standardize"]
    model = _chain_model(steps, const_as_input=True)  # c0 is also a graph input
    rewritten = fold_row_affine(model)
    assert rewritten is not None
    assert _ops(rewritten) == ["Sub", "Gemm", "Gemm", "Identity"]  # only the Div folded
    x = np.random.default_rng(6).normal(size=(100, 4)).astype(np.float32)
    feed = {"x": x, "c0": np.array([1.0, 2.0, 3.0, 4.0], np.float32)}  # not CENTRE
    want = _chain_reference([("Sub", feed["c0"], False), steps[1]], x)
    for m in (model, rewritten):
        z = ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(["z"], feed)[0]
        np.testing.assert_allclose(z, want, rtol=1e-5)


def test_shipped_dense_models_fold_their_scaling(tmp_path):
    """The shipped SVJ AE: its standardization and its un-standardized reconstruction become
    Gemms, its Elus vectorized ops, and the session's outputs agree with the model as
    written."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "models" / "svj_dense_ae.onnx"
    raw = path.read_bytes()
    ops_before = _ops(raw)
    rewritten = rewrite_for_cpu(raw)
    assert rewritten is not None
    ops = _ops(rewritten)
    assert "Div" not in ops and "Elu" not in ops and "Mul" not in ops
    assert ops.count("Gemm") == ops_before.count("Gemm") + 2
    n_in = onnx.load_from_string(raw).graph.input[0].type.tensor_type.shape.dim[1].dim_value
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(2000, n_in)) * [1.2, 1.8, 45.0, 0.1, 0.08, 0.03]
         + [0.0, 0.0, 70.0, 0.3, 0.07, 0.03]).astype(np.float32)
    name = onnx.load_from_string(raw).graph.input[0].name
    plain = ort.InferenceSession(raw, providers=["CPUExecutionProvider"]).run(None, {name: x})
    fast = ort.InferenceSession(rewritten, providers=["CPUExecutionProvider"]).run(
        None, {name: x})
    for before, after in zip(plain, fast, strict=True):
        scale = np.abs(before).max(axis=0)  # per output column: its own size
        np.testing.assert_allclose(after, before, rtol=2e-5, atol=1e-5 * float(scale.max()))
