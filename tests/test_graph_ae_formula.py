"""The graph AE (nn/graph_ae.py) and the shipped models/svj_gae.onnx against the GCN formula
written out per jet in numpy, with explicit padding masks everywhere.

The module folds the padding masks into the degree vector, drops the mask product after each
layer and maps rows with one Gemm (a cheaper ONNX graph); this checks that it is still
``H' = act(D^-1/2 (A ⊙ m mᵀ) D^-1/2 H W + b) ⊙ m`` and the masked MSE, on the real PFNano
jets (the shipped weights) and on random jets with NaN in padded slots and both adjacency
kinds.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from coffea_ad.nn.graph_ae import GraphAutoencoder

MODEL = Path(__file__).resolve().parents[1] / "models" / "svj_gae.onnx"


def elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def reference_loss(x, m, layers, centre, scale, *, eta_index=0, phi_index=1, r_c=0.1,
                   kind="hard"):
    """Per-jet loop in float64: ``layers`` = [(W [in, out], b, activation?)]."""
    out = np.zeros(len(x))
    for k in range(len(x)):
        real = m[k] > 0
        n = int(real.sum())
        if n == 0:
            continue
        nodes = x[k][real].astype(np.float64)  # real nodes only: padding cannot enter
        eta, phi = nodes[:, eta_index], nodes[:, phi_index]
        dphi = phi[:, None] - phi[None, :]
        dphi = dphi - 2 * math.pi * np.round(dphi / (2 * math.pi))
        dr2 = (eta[:, None] - eta[None, :]) ** 2 + dphi ** 2
        a = (dr2 < r_c * r_c).astype(float) if kind == "hard" else np.exp(-dr2 / (2 * r_c**2))
        d = 1.0 / np.sqrt(a.sum(axis=1))
        a_norm = d[:, None] * a * d[None, :]
        z = (nodes - centre) / scale
        h = z
        for w, b, act in layers:
            h = a_norm @ (h @ w + b)
            if act:
                h = elu(h)
        out[k] = np.sum((h - z) ** 2) / (n * x.shape[2])
    return out


def onnx_layers(path: Path):
    import onnx
    from onnx import numpy_helper

    w = {i.name: numpy_helper.to_array(i).astype(np.float64)
         for i in onnx.load(str(path)).graph.initializer}
    names = [f"{part}.{k}" for part in ("encoder", "decoder") for k in range(3)]
    # Gemm exports name the Linear weights ([out, in]); older MatMul exports hold them
    # transposed ([in, out]) under generated names, in layer order
    matmuls = [v for k, v in w.items() if k.startswith("onnx::MatMul")]
    layers = []
    for i, name in enumerate(names):
        mat = (w[f"{name}.linear.weight"].T if f"{name}.linear.weight" in w
               else matmuls[i])
        layers.append((mat, w[f"{name}.linear.bias"], i != len(names) - 1))
    return layers, w["scaler.centre"], w["scaler.scale"]


@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")
def test_shipped_svj_gae_equals_the_formula_on_real_jets(pfnano_file):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    from coffea_ad.features import jet_constituents, particle_list
    from coffea_ad.inference import OnnxScorer

    spec = json.loads(MODEL.with_suffix(".json").read_text())["inputs"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        events = NanoEventsFactory.from_root({str(pfnano_file): "Events"},
                                             schemaclass=PFNanoAODSchema,
                                             mode="virtual").events()
    x, m = particle_list(jet_constituents(events), events.FatJet, n=spec["pad_length"],
                         features=spec["features"], pad_value=spec["pad_value"])
    x, m = np.asarray(x, dtype=np.float32), np.asarray(m, dtype=np.float32)
    assert len(x) == 24
    assert (m.sum(axis=1) == 50).any()  # full jets ...
    assert (m.sum(axis=1) < 50).any()  # ... and padded ones
    layers, centre, scale = onnx_layers(MODEL)
    want = reference_loss(x, m, layers, centre, scale)
    got = OnnxScorer(MODEL)({"particles": x, "mask": m})
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=0)
    assert np.all(want > 0)


@pytest.mark.parametrize("kind", ["hard", "weighted"])
def test_graph_ae_module_equals_the_formula_with_nan_padding(kind):
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    n_jets, n_nodes, n_feat = 40, 12, 4
    model = GraphAutoencoder(n_feat, n_nodes, r_c=0.3, adjacency=kind, hidden=(8, 6),
                             latent=2, centre=[0.1, -0.2, 1.0, 0.5],
                             scale=[0.5, 0.7, 2.0, 1.5]).eval()
    x = rng.normal(0, 0.3, size=(n_jets, n_nodes, n_feat)).astype(np.float32)
    x[:, :, 1] = rng.uniform(-math.pi, math.pi, size=(n_jets, n_nodes))  # φ wraps
    counts = rng.integers(0, n_nodes + 1, size=n_jets)
    counts[:3] = (0, 1, n_nodes)
    m = (np.arange(n_nodes)[None, :] < counts[:, None]).astype(np.float32)
    x[m == 0] = np.nan  # padded slots must not leak
    with torch.no_grad():
        loss, recon = model(torch.from_numpy(x), torch.from_numpy(m))
    layers = [(layer.linear.weight.detach().numpy().T.astype(np.float64),
               layer.linear.bias.detach().numpy().astype(np.float64),
               layer.act is not None) for layer in (*model.encoder, *model.decoder)]
    want = reference_loss(x, m, layers, model.scaler.centre.numpy().astype(np.float64),
                          model.scaler.scale.numpy().astype(np.float64), r_c=0.3, kind=kind)
    np.testing.assert_allclose(loss.numpy(), want, rtol=2e-5, atol=1e-7)
    assert loss[0] == 0  # no real node
    assert np.all(np.isfinite(recon.numpy()))
    assert np.all(recon.numpy()[m == 0] == 0)
