"""The in-memory ONNX rewrite of Elu into vectorized ops: the same function (against the
Elu definition written out in numpy and against ONNX Runtime's own Elu), applied only where
it is exact, and what the scorer runs with it and without it."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from coffea_ad.inference import InputSpec, ModelContract, OnnxScorer, OutputSpec
from coffea_ad.inference.rewrite import vectorize_elu


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

    def spy(model: bytes) -> bytes | None:  # the real rewrite, recording that it rewrote
        out = vectorize_elu(model)
        rewritten.append(out is not None)
        return out

    monkeypatch.setattr(rewrite, "vectorize_elu", spy)
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
