"""SubstructureFlow: its score is a normalized conditional density of the (log-)standardized
inputs, checked by numerical integration, and the ONNX export reproduces torch."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("zuko")

from coffea_ad.nn.jet_flow import SubstructureFlow


def _flow(log: bool, scale: float = 1.0):
    torch.manual_seed(1)
    m = SubstructureFlow(1, 1, log_inputs=[log], centre=[0.0, 0.0], scale=[scale, 1.0],
                        transforms=2, hidden=(8,)).eval()
    # random weights, not the identity the zero-initialised last layers would give
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


def _score(m, x, c):
    feats = torch.tensor(np.stack([np.full_like(x, c), x], 1), dtype=torch.float32)
    with torch.no_grad():
        return m(feats)[1].numpy().astype(np.float64)


@pytest.mark.parametrize("c", [-1.0, 0.7])
def test_exp_minus_score_integrates_to_one(c):
    m = _flow(log=False)
    # inside the clipping range [-10, 10] the density is the flow's: it holds all the mass
    # but the far tails (under 1 %)
    x = np.linspace(-10, 10, 40001)
    assert 0.99 < np.trapezoid(np.exp(-_score(m, x, c)), x) < 1.0 + 1e-4
    # beyond it the inputs are clipped: the score stays that of the edge
    np.testing.assert_allclose(_score(m, np.array([10.0, 1e3]), c)[1], _score(m, np.array([10.0]), c)[0], rtol=1e-6)


def test_scale_and_log_transform_enter_as_documented():
    # score = -log p(z), z = (log x - 20) / 2: p_x(x) = p(z) / (2 x), so in u = log x,
    # the integral of exp(-score) du is 2 (the density sits far above the 1e-4 floor)
    torch.manual_seed(1)
    m = SubstructureFlow(1, 1, log_inputs=[True], centre=[20.0, 0.0], scale=[2.0, 1.0],
                        transforms=2, hidden=(8,)).eval()
    u = np.linspace(np.log(1e-4) + 1e-6, 50, 40001)
    assert np.trapezoid(np.exp(-_score(m, np.exp(u), 0.3)), u) == pytest.approx(2.0, abs=2e-3)
    # values below the floor are clipped, not NaN
    assert np.isfinite(_score(m, np.array([0.0, -1.0]), 0.3)).all()


def test_score_is_the_per_dimension_inverse_density_relative_to_the_median():
    torch.manual_seed(0)
    m = SubstructureFlow(1, 3, log_inputs=[False] * 3, centre=np.zeros(4), scale=np.ones(4),
                        transforms=2, hidden=(8,)).eval()
    x = torch.randn(101, 4)
    ref = m.set_reference(x)
    with torch.no_grad():
        score, nll = m(x)
    assert ref == pytest.approx(float(np.median(nll.numpy())), abs=1e-5)
    np.testing.assert_allclose(score.numpy(), np.exp((nll.numpy() - ref) / 3), rtol=1e-5)
    assert float(torch.median(score)) == pytest.approx(1.0, abs=1e-5)
    # a row far outside the training range: inputs clipped at 10 standard deviations
    with torch.no_grad():
        far, _ = m(torch.full((1, 4), 1e4))
        edge, _ = m(torch.full((1, 4), 10.0))
    assert torch.isfinite(far).all()
    assert float(far) == pytest.approx(float(edge), rel=1e-6)


def test_transform_inputs_matches_the_graph():
    x = np.array([[0.5, 3.0], [2.0, 0.0]])
    out = SubstructureFlow.transform_inputs(x, [False, True])
    np.testing.assert_allclose(out, [[0.5, np.log(3.0)], [2.0, np.log(1e-4)]])


def test_onnx_export_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    from coffea_ad.nn.export import export_onnx, verify_onnx

    torch.manual_seed(0)
    m = SubstructureFlow(1, 3, log_inputs=[True, False, True], centre=np.zeros(4),
                        scale=np.ones(4), transforms=2, hidden=(16,))
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(16, 4))).astype(np.float32) + 0.1
    m.set_reference(x)
    path = export_onnx(m, {"features": x}, tmp_path / "f.onnx", output_names=["score", "nll"])
    diff = verify_onnx(m, path, {"features": np.abs(rng.normal(size=(37, 4))).astype(np.float32)})
    assert diff["score"] < 1e-4
    assert diff["nll"] < 1e-4
