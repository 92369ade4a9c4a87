"""The graph AE (nn/graph_ae.py) and the shipped models/svj_gae.onnx against the GCN formula
written out per jet in numpy, with explicit padding masks everywhere.

The module folds the padding masks into the degree vector, drops the mask product after each
layer, maps rows with one Gemm, reshapes with constant shapes and exports its ELU as
``Max(x, Exp(Min(x, 0)) - 1)`` (a cheaper ONNX graph); this checks that it is still
``H' = act(D^-1/2 (A ⊙ m mᵀ) D^-1/2 H W + b) ⊙ m`` and the masked MSE, on the real PFNano
jets (the shipped weights) and on random jets with NaN in padded slots and both adjacency
kinds, in torch and in ONNX Runtime.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from coffea_ad.errors import InvalidArgumentError
from coffea_ad.nn.export import export_onnx
from coffea_ad.nn.graph_ae import GraphAutoencoder

MODEL = Path(__file__).resolve().parents[1] / "models" / "svj_gae.onnx"


def elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def reference_loss(x, m, layers, centre, scale, **kw):
    return reference_outputs(x, m, layers, centre, scale, **kw)[0]


def jet_adjacency(eta, phi, *, r_c, kind, wrap):
    """``D^-1/2 A D^-1/2`` of one jet's real nodes (float64 η, φ)."""
    dphi = phi[:, None] - phi[None, :]
    if wrap:
        dphi = dphi - 2 * math.pi * np.round(dphi / (2 * math.pi))
    dr2 = (eta[:, None] - eta[None, :]) ** 2 + dphi ** 2
    a = (dr2 < r_c * r_c).astype(float) if kind == "hard" else np.exp(-dr2 / (2 * r_c**2))
    d = 1.0 / np.sqrt(a.sum(axis=1))
    return d[:, None] * a * d[None, :]


def reference_outputs(x, m, layers, centre, scale, *, eta_index=0, phi_index=1, r_c=0.1,
                      kind="hard", wrap=True):
    """Per-jet loop in float64 over the real nodes only, node by node in feature order (no
    flat layout, no broadcasting of centre/scale): ``layers`` = [(W [in, out], b,
    activation?)]; ``wrap``: Δφ wrapped to [-π, π] (a raw azimuth). Returns the loss [jets]
    and the reconstruction in raw units [jets, nodes, features] (0 at padded nodes)."""
    out = np.zeros(len(x))
    recon = np.zeros(x.shape)
    for k in range(len(x)):
        real = m[k] > 0
        n = int(real.sum())
        if n == 0:
            continue
        nodes = x[k][real].astype(np.float64)  # real nodes only: padding cannot enter
        a_norm = jet_adjacency(nodes[:, eta_index], nodes[:, phi_index], r_c=r_c, kind=kind,
                               wrap=wrap)
        z = (nodes - centre) / scale
        h = z
        for w, b, act in layers:
            h = a_norm @ (h @ w + b)
            if act:
                h = elu(h)
        out[k] = np.sum((h - z) ** 2) / (n * x.shape[2])
        nodes_out = np.flatnonzero(real)
        for i, node in enumerate(nodes_out):
            for j in range(x.shape[2]):
                recon[k, node, j] = h[i, j] * scale[j] + centre[j]
    return out, recon


def onnx_layers(path: Path):
    import onnx
    from onnx import numpy_helper

    w = {i.name: numpy_helper.to_array(i).astype(np.float64)
         for i in onnx.load(str(path)).graph.initializer}
    names = [f"{part}.{k}" for part in ("encoder", "decoder") for k in range(len(w))
             if f"{part}.{k}.linear.bias" in w]
    # Gemm exports name the Linear weights ([out, in]); older MatMul exports hold them
    # transposed ([in, out]) under generated names, in layer order
    matmuls = [v for k, v in w.items() if k.startswith("onnx::MatMul")]
    layers = []
    for i, name in enumerate(names):
        mat = (w[f"{name}.linear.weight"].T if f"{name}.linear.weight" in w
               else matmuls[i])
        layers.append((mat, w[f"{name}.linear.bias"], i != len(names) - 1))
    return layers, w["scaler.centre"], w["scaler.scale"]


def shipped_inputs(pfnano_file):
    """The shipped model's particle input spec and its padded blocks (float32) of the real
    PFNano jets, by the grouped constituent path."""
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    from coffea_ad.features import jet_constituents, particle_list

    spec = json.loads(MODEL.with_suffix(".json").read_text())["inputs"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        events = NanoEventsFactory.from_root({str(pfnano_file): "Events"},
                                             schemaclass=PFNanoAODSchema,
                                             mode="virtual").events()
    x, m = particle_list(jet_constituents(events), events.FatJet, n=spec["pad_length"],
                         features=spec["features"], pad_value=spec["pad_value"])
    return spec, np.asarray(x, dtype=np.float32), np.asarray(m, dtype=np.float32)


@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")
def test_shipped_svj_gae_equals_the_formula_on_real_jets(pfnano_file):
    from coffea_ad.inference import OnnxScorer

    _, x, m = shipped_inputs(pfnano_file)
    assert len(x) == 24
    assert (m.sum(axis=1) == 50).any()  # full jets ...
    assert (m.sum(axis=1) < 50).any()  # ... and padded ones
    layers, centre, scale = onnx_layers(MODEL)
    want = reference_loss(x, m, layers, centre, scale)
    got = OnnxScorer(MODEL)({"particles": x, "mask": m})
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=0)
    assert np.all(want > 0)


def random_jets(rng, n_jets, n_nodes, n_feat):
    """Jets with 0, 1, all and random numbers of real nodes, φ over the full circle (the ΔR
    wraps: nodes 1 and 2 straddle ±π) and NaN in every padded slot (padding must not leak)."""
    x = rng.normal(0, 0.3, size=(n_jets, n_nodes, n_feat)).astype(np.float32)
    x[:, :, 1] = rng.uniform(-math.pi, math.pi, size=(n_jets, n_nodes))
    # in every jet a pair straddling φ = ±π (ΔR 0.08 with the wrap, ~2π without)
    x[:, 2, 0] = x[:, 1, 0]
    x[:, 1, 1], x[:, 2, 1] = math.pi - 0.04, -math.pi + 0.04
    counts = rng.integers(0, n_nodes + 1, size=n_jets)
    counts[:3] = (0, 1, n_nodes)
    m = (np.arange(n_nodes)[None, :] < counts[:, None]).astype(np.float32)
    x[m == 0] = np.nan
    pad = np.argwhere(m == 0)  # and ±inf in some padded slots (inf * 0 is NaN too)
    x[pad[::3, 0], pad[::3, 1], -1] = np.inf
    x[pad[1::3, 0], pad[1::3, 1], 2 % n_feat] = -np.inf
    return x, m


def module_layers(model):
    return [(layer.linear.weight.detach().numpy().T.astype(np.float64),
             layer.linear.bias.detach().numpy().astype(np.float64),
             layer.act is not None) for layer in (*model.encoder, *model.decoder)]


# widening, narrowing and equal-width layers, and a single hidden layer
ARCHS = [((8, 6), 2), ((4,), 4)]


@pytest.mark.parametrize(("hidden", "latent"), ARCHS)
@pytest.mark.parametrize("kind", ["hard", "weighted"])
def test_graph_ae_module_equals_the_formula_with_nan_padding(kind, hidden, latent):
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    n_jets, n_nodes, n_feat = 40, 12, 4
    model = GraphAutoencoder(n_feat, n_nodes, r_c=0.3, adjacency=kind, hidden=hidden,
                             latent=latent, centre=[0.1, -0.2, 1.0, 0.5],
                             scale=[0.5, 0.7, 2.0, 1.5]).eval()
    x, m = random_jets(rng, n_jets, n_nodes, n_feat)
    with torch.no_grad():
        loss, recon = model(torch.from_numpy(x), torch.from_numpy(m))
    want, want_recon = reference_outputs(x, m, module_layers(model),
                                         model.scaler.centre.numpy().astype(np.float64),
                                         model.scaler.scale.numpy().astype(np.float64),
                                         r_c=0.3, kind=kind)
    np.testing.assert_allclose(loss.numpy(), want, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(recon.numpy(), want_recon, rtol=1e-5, atol=1e-5)
    assert loss[0] == 0  # no real node
    assert np.all(np.isfinite(recon.numpy()))
    assert np.all(recon.numpy()[m == 0] == 0)


@pytest.mark.parametrize("periodic_phi", [True, False])
@pytest.mark.parametrize(("hidden", "latent"), ARCHS)
@pytest.mark.parametrize("kind", ["hard", "weighted"])
def test_exported_graph_ae_equals_the_formula_and_torch(kind, hidden, latent, periodic_phi,
                                                        tmp_path):
    """The ONNX graph (traced at 5 jets, run at 60) against the float64 formula and eager
    torch: its ELU is Max/Exp/Min, its reshapes have constant shapes; without
    ``periodic_phi`` it has no Δφ wrap (no Round) and is the formula without the wrap, on
    jets whose φ spans the full circle (pairs across ±π are linked only with the wrap)."""
    import onnx
    import onnxruntime as ort

    torch.manual_seed(5)
    rng = np.random.default_rng(5)
    n_nodes, n_feat = 12, 4
    model = GraphAutoencoder(n_feat, n_nodes, r_c=0.3, adjacency=kind, hidden=hidden,
                             latent=latent, centre=[0.1, -0.2, 1.0, 0.5],
                             scale=[0.5, 0.7, 2.0, 1.5], periodic_phi=periodic_phi).eval()
    with torch.no_grad():  # activations on both sides of 0 in every layer
        for layer in (*model.encoder, *model.decoder):
            layer.linear.weight.mul_(3.0)
    xt, mt = random_jets(rng, 5, n_nodes, n_feat)
    path = export_onnx(model, {"particles": torch.from_numpy(xt), "mask": torch.from_numpy(mt)},
                       tmp_path / "gae.onnx", output_names=list(model.output_names))
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Elu" not in ops
    assert {"Exp", "Max"} <= ops
    assert "Concat" not in ops  # no shape arithmetic per layer
    assert ("Round" in ops) == periodic_phi
    # node-level ops on the flat [batch, n * F] layout: no per-node Expand of the mask, no
    # Gather of the η/φ columns (the scaler's tiled constants fold at session start)
    assert "Gather" not in ops
    assert not any(node.op_type == "Expand" and "scaler" not in node.input[0]
                   for node in onnx.load(str(path)).graph.node)
    x, m = random_jets(rng, 60, n_nodes, n_feat)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    loss, recon = sess.run(None, {"particles": x, "mask": m})
    centre = model.scaler.centre.numpy().astype(np.float64)
    scale = model.scaler.scale.numpy().astype(np.float64)
    want, want_recon = reference_outputs(x, m, module_layers(model), centre, scale, r_c=0.3,
                                         kind=kind, wrap=periodic_phi)
    np.testing.assert_allclose(loss, want, rtol=2e-5, atol=1e-7)
    # the reconstruction node by node and feature by feature: a node-level rewrite that
    # mixes up nodes and features (the flat layout) or lets padding through fails here
    np.testing.assert_allclose(recon, want_recon, rtol=1e-5, atol=2e-5)
    other = reference_loss(x, m, module_layers(model), centre, scale, r_c=0.3, kind=kind,
                           wrap=not periodic_phi)
    assert np.sum(np.abs(other - want) > 1e-3 * np.abs(want)) >= 5  # the data tells them apart
    with torch.no_grad():
        t_loss, t_recon = model(torch.from_numpy(x), torch.from_numpy(m))
    np.testing.assert_allclose(loss, t_loss.numpy(), rtol=1e-5, atol=1e-7)
    # float32 rounding (ONNX Runtime's Exp, summation order) through four layers whose
    # weights were tripled: up to 1.1e-5 at the nodes straddling ±π (the strongest weighted
    # link), where the normalized adjacencies agree to 2.4e-7
    np.testing.assert_allclose(recon, t_recon.numpy(), rtol=1e-5, atol=2e-5)
    assert loss[0] == 0
    assert np.all(recon[m == 0] == 0)
    assert np.all(want[m.sum(axis=1) > 0] > 0)


def test_exported_elu_is_elu(tmp_path):
    """The ELU export (Max(x, Exp(Min(x, 0)) - 1)) against torch's ELU in float64, over
    ±100, the region near 0 and the infinities: within the rounding of eˣ, exact for x > 0."""
    import onnxruntime as ort

    from coffea_ad.nn.graph_ae import _ExportedELU

    x = np.concatenate([np.linspace(-100, 100, 20001), np.linspace(-1e-3, 1e-3, 2001),
                        [-1e-30, 0.0, 1e-30, 1e30, -1e30, np.inf, -np.inf]]).astype(np.float32)
    path = export_onnx(_ExportedELU(), {"x": torch.zeros(3, 1)}, tmp_path / "elu.onnx",
                       output_names=["y"])
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x.reshape(-1, 1)})[0].ravel()
    x64 = x.astype(np.float64)
    want = np.where(x64 > 0, x64, np.expm1(np.minimum(x64, 0.0)))
    np.testing.assert_allclose(got, want, rtol=0, atol=1.2e-7)
    assert np.all(got[x > 0] == x[x > 0])
    with torch.no_grad():  # and eager torch is nn.ELU itself
        eager = _ExportedELU()(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(eager, torch.nn.functional.elu(torch.from_numpy(x)).numpy())


def test_graph_ae_refuses_another_number_of_nodes():
    model = GraphAutoencoder(4, 12, hidden=(8,), latent=2)
    with pytest.raises(InvalidArgumentError, match=r"\[batch, 12, 4\].*found \[3, 10, 4\]"):
        model(torch.zeros(3, 10, 4), torch.ones(3, 10))


def relative_jets(rng, n_jets, n_nodes, n_feat):
    """Jets in coordinates relative to their axis (Δη, Δφ within the AK8 cone, as the
    ``deta``/``dphi`` features), NaN in padded slots."""
    x, m = random_jets(rng, n_jets, n_nodes, n_feat)
    x[:, :, :2] = rng.uniform(-0.8, 0.8, size=(n_jets, n_nodes, 2))
    x[m == 0] = np.nan
    return x, m


@pytest.mark.parametrize("kind", ["hard", "weighted"])
def test_relative_phi_graph_equals_the_wrapped_graph(kind, tmp_path):
    """On relative Δφ (|Δφ_ij| < π) the wrap is the identity: the graph without it gives the
    same adjacency, scores and reconstruction, bit for bit in torch, and its ONNX export (no
    Round) the same scores as the wrapped export."""
    import onnxruntime as ort

    torch.manual_seed(7)
    rng = np.random.default_rng(7)
    n_nodes, n_feat = 12, 4
    kw = {"r_c": 0.3, "adjacency": kind, "hidden": (6,), "latent": 2,
          "centre": [0.1, -0.2, 1.0, 0.5], "scale": [0.5, 0.7, 2.0, 1.5]}
    wrapped = GraphAutoencoder(n_feat, n_nodes, **kw).eval()
    relative = GraphAutoencoder(n_feat, n_nodes, periodic_phi=False, **kw).eval()
    relative.load_state_dict(wrapped.state_dict())
    x, m = relative_jets(rng, 200, n_nodes, n_feat)
    xt, mt = torch.from_numpy(x), torch.from_numpy(m)
    with torch.no_grad():
        a_w, a_r = wrapped.normalized_adjacency(xt, mt), relative.normalized_adjacency(xt, mt)
        (l_w, r_w), (l_r, r_r) = wrapped(xt, mt), relative(xt, mt)
    assert (a_w > 0).sum() > m.sum() + 100  # off-diagonal links exist
    np.testing.assert_array_equal(a_r.numpy(), a_w.numpy())
    np.testing.assert_array_equal(l_r.numpy(), l_w.numpy())
    np.testing.assert_array_equal(r_r.numpy(), r_w.numpy())
    scores = []
    for name, model in (("wrapped", wrapped), ("relative", relative)):
        path = export_onnx(model, {"particles": xt[:5], "mask": mt[:5]},
                           tmp_path / f"{name}.onnx", output_names=list(model.output_names))
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        scores.append(sess.run(["loss"], {"particles": x, "mask": m})[0])
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-6, atol=0)
    np.testing.assert_allclose(scores[1], l_w.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["hard", "weighted"])
def test_raw_phi_is_still_wrapped(kind):
    """Two constituents 0.02 apart across φ = ±π: linked (and normalized) with the wrap, not
    linked without it; the module and the public delta_r_adjacency agree."""
    from coffea_ad.nn.graph_ae import delta_r_adjacency

    eta = torch.tensor([[0.3, 0.3, 0.0]])
    phi = torch.tensor([[math.pi - 0.01, -math.pi + 0.01, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    particles = torch.stack([eta, phi, torch.zeros_like(eta)], dim=-1)
    link = 1.0 if kind == "hard" else math.exp(-0.02**2 / (2 * 0.1**2))
    for periodic, want in ((True, link), (False, 0.0)):
        a = delta_r_adjacency(eta, phi, mask, r_c=0.1, kind=kind, periodic_phi=periodic)
        assert a[0, 0, 1].item() == pytest.approx(want, rel=1e-6)
        assert a[0, 2].abs().sum() == 0  # the padded node
        model = GraphAutoencoder(3, 3, r_c=0.1, adjacency=kind, hidden=(), latent=2,
                                 periodic_phi=periodic)
        norm = model.normalized_adjacency(particles, mask)[0].numpy()
        # D^-1/2 A D^-1/2 of [[1, w], [w, 1]]: w / (1 + w) off the diagonal, 1 / (1 + w) on it
        np.testing.assert_allclose(norm[:2, :2], [[1 / (1 + want), want / (1 + want)],
                                                  [want / (1 + want), 1 / (1 + want)]],
                                   rtol=1e-6)
        assert np.all(norm[2] == 0)
        assert np.all(norm[:, 2] == 0)


def test_gae_recipe_drops_the_wrap_only_for_relative_phi():
    from coffea_ad.training import gae

    assert gae.periodic_phi("dphi") is False
    assert gae.periodic_phi("phi") is True
    assert gae.CONFIG["particle_features"][1] == "dphi"


@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")
def test_shipped_svj_gae_has_no_phi_wrap_and_its_jets_allow_none(pfnano_file):
    """The shipped graph leaves out the Δφ wrap (its φ column is dphi, relative to the jet
    axis); that is the identity when every pair of constituents of a jet is less than π
    apart in Δφ, as on the CMS-format file: |dphi| < π/2 for every constituent."""
    import onnx

    ops = {node.op_type for node in onnx.load(str(MODEL)).graph.node}
    assert "Round" not in ops
    spec, x, m = shipped_inputs(pfnano_file)
    assert spec["features"][1] == "dphi"
    dphi = x[..., 1][m > 0]
    assert len(dphi) > 500
    assert np.abs(dphi).max() < math.pi / 2


def formula_adjacency(x, m, *, r_c=0.1, kind="hard", wrap=True):
    """``D^-1/2 A D^-1/2`` per jet in float64 over the real nodes only, placed at their rows
    and columns of a zero [jets, n, n]."""
    out = np.zeros((len(x), x.shape[1], x.shape[1]))
    for k in range(len(x)):
        real = np.flatnonzero(m[k] > 0)
        if len(real) == 0:
            continue
        out[k][np.ix_(real, real)] = jet_adjacency(
            x[k, real, 0].astype(np.float64), x[k, real, 1].astype(np.float64), r_c=r_c,
            kind=kind, wrap=wrap)
    return out


@pytest.mark.parametrize("wrap", [True, False])
@pytest.mark.parametrize("kind", ["hard", "weighted"])
def test_compiled_adjacency_equals_the_formula_and_the_module(kind, wrap):
    """features.normalized_adjacency (what the scorer feeds a graph AE exported with its
    adjacency as an input) against the per-jet formula, and against the module's own graph
    function: the same bits for the hard kind. Jets with NaN/inf padding, pairs across ±π,
    and masks that are not a prefix (real nodes after padded ones)."""
    from coffea_ad.features import normalized_adjacency

    rng = np.random.default_rng(8)
    x, m = random_jets(rng, 60, 12, 4)
    order = rng.permutation(12)  # padded slots between real ones
    x, m = np.ascontiguousarray(x[:, order]), np.ascontiguousarray(m[:, order])
    assert ((m[:, 1:] > 0) & (m[:, :-1] == 0)).any()
    got = normalized_adjacency(x, m, eta_index=0, phi_index=1, r_c=0.1, kind=kind,
                               periodic_phi=wrap)
    assert got.dtype == np.float32
    assert np.isfinite(got).all()
    want = formula_adjacency(x, m, kind=kind, wrap=wrap)
    # weighted: float32 ΔR² (and the wrap's cancellation near ±π) inside exp, ~1e-5
    np.testing.assert_allclose(got, want, rtol=2e-6 if kind == "hard" else 2e-5, atol=1e-7)
    linked = (want > 0).sum(axis=(1, 2)) - (m > 0).sum(axis=1)
    assert (linked > 0).any()
    assert (linked == 0).any()
    model = GraphAutoencoder(4, 12, r_c=0.1, adjacency=kind, periodic_phi=wrap)
    with torch.no_grad():
        module = model.normalized_adjacency(torch.from_numpy(x), torch.from_numpy(m)).numpy()
    if kind == "hard":
        np.testing.assert_array_equal(got, module)
    else:
        np.testing.assert_allclose(got, module, rtol=1e-6, atol=1e-7)


def test_adjacency_input_export_scores_as_the_self_contained_graph(tmp_path):
    """The same weights exported with the adjacency built inside the graph and as a derived
    input: OnnxScorer gives the same scores (bit for bit, hard kind), and the contract
    refuses an inconsistent derived input."""
    from coffea_ad.errors import ModelContractError
    from coffea_ad.inference import OnnxScorer
    from coffea_ad.inference.contract import InputSpec, ModelContract, OutputSpec

    rng = np.random.default_rng(9)
    x, m = random_jets(rng, 50, 10, 4)
    x[m == 0] = 0.0  # the scorer refuses NaN inputs by default
    x[:, :, :2] *= 0.3  # Δη, Δφ-like: pairs inside and outside ΔR 0.1
    torch.manual_seed(0)
    model = GraphAutoencoder(4, 10, r_c=0.1, periodic_phi=False, hidden=(6,), latent=3).eval()
    graph = {"kind": "normalized_adjacency", "of": "particles", "eta": "a", "phi": "b",
             "r_c": 0.1, "adjacency": "hard", "periodic_phi": False}
    base = [InputSpec("particles", list("abcd"), [10, 4], scaling="in_graph", pad_length=10),
            InputSpec("mask", ["mask"], [10], pad_length=10)]
    paths = {}
    for name, extra in (("inside", []), ("derived", [InputSpec(
            "adjacency", ["adjacency"], [10, 10], pad_length=10, graph=graph)])):
        contract = ModelContract(name=name, kind="graph_autoencoder", level="jet",
                                 inputs=[*base, *extra], outputs=[
                                     OutputSpec("loss", "score"),
                                     OutputSpec("reconstruction", "nodes", [10, 4])],
                                 score="loss", opset=17)
        example = {"particles": torch.from_numpy(x[:8]), "mask": torch.from_numpy(m[:8])}
        if extra:
            with torch.no_grad():
                example["adjacency"] = model.normalized_adjacency(example["particles"],
                                                                  example["mask"])
        paths[name] = export_onnx(model, example, tmp_path / f"{name}.onnx",
                                  output_names=["loss", "reconstruction"], contract=contract)
    scores = {k: OnnxScorer(p, batch_size=16)({"particles": x, "mask": m})
              for k, p in paths.items()}
    np.testing.assert_array_equal(scores["derived"], scores["inside"])
    assert np.ptp(scores["derived"]) > 0
    for bad, match in (({"of": "mask"}, "padded particle input"), ({"eta": "z"}, "'z'"),
                       ({"adjacency": "soft"}, "adjacency must be"), ({"kind": "knn"}, "keys")):
        spec = InputSpec("adjacency", ["adjacency"], [10, 10], pad_length=10,
                         graph={**graph, **bad})
        with pytest.raises(ModelContractError, match=match):
            ModelContract(name="b", kind="graph_autoencoder", level="jet",
                          inputs=[*base, spec], outputs=[OutputSpec("loss", "score")],
                          score="loss", opset=17).validate()
