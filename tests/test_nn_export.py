"""Every model family exports to ONNX and ONNX Runtime agrees with torch.

Each export is traced at one batch size and checked at another (dynamic batch axis), with
``rtol=1e-4`` (float32 round-off through a few layers stays well below it); padded entries hold garbage so the masks are exercised.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from coffea_ad.nn.baselines import fit_pca
from coffea_ad.nn.cvae import ConditionalVAE, CVAESampler
from coffea_ad.nn.dense import DenseAutoencoder
from coffea_ad.nn.export import export_onnx, verify_onnx
from coffea_ad.nn.graph_ae import GraphAutoencoder
from coffea_ad.nn.particle_vae import ParticleVAE
from coffea_ad.nn.quantile import QuantileRegressor
from coffea_ad.nn.vae import VAE, VAEClassifier

RNG = np.random.default_rng(7)
TRACE, CHECK = 5, 23  # traced batch size and the different one checked
CENTRE = [0, 0, 80, 0.5, 0.1, 0.05]  # jet-feature-like offsets and spreads
SCALE = [1, 2, 30, 0.2, 0.05, 0.03]


def _dense(n: int, f: int = 6) -> dict[str, np.ndarray]:
    x = RNG.normal(size=(n, f)) * np.array(SCALE) + np.array(CENTRE)
    return {"features": x.astype(np.float32)}


def _particles(n: int, n_part: int = 12, f: int = 3) -> dict[str, np.ndarray]:
    x = RNG.normal(scale=0.3, size=(n, n_part, f)).astype(np.float32)
    counts = RNG.integers(0, n_part + 1, size=n)
    counts[0] = 0  # an empty jet
    counts[-1] = n_part  # a full one
    mask = (np.arange(n_part)[None, :] < counts[:, None]).astype(np.float32)
    x[mask == 0] = 1e3  # garbage in the padding: the masks must hide it
    x[:, -1][mask[:, -1] == 0] = np.nan  # NaN too (a product with the mask would leak it)
    return {"particles": x, "mask": mask}


def _cvae_inputs(n: int) -> dict[str, np.ndarray]:
    return {"features": RNG.normal(size=(n, 4)).astype(np.float32),
            "condition": RNG.uniform(2500, 4500, size=(n, 1)).astype(np.float32)}


def _build(family: str):
    torch.manual_seed(3)
    if family == "dense_ae":
        return DenseAutoencoder(6, centre=CENTRE, scale=SCALE), _dense
    if family == "vae":
        return VAE(6, score="combined"), _dense
    if family == "vae_classifier":
        return VAEClassifier(6), _dense
    if family == "particle_vae":
        return ParticleVAE(3, 12, n_out=8, hidden=16, latent=4), _particles
    if family == "graph_ae":
        return (GraphAutoencoder(3, 12, r_c=0.4, hidden=(8,), latent=2),
                lambda n: _particles(n, f=3))
    if family == "graph_ae_weighted":
        return (GraphAutoencoder(3, 12, r_c=0.4, adjacency="weighted", hidden=(8,), latent=2),
                lambda n: _particles(n, f=3))
    if family == "cvae":
        return ConditionalVAE(4, cond_centre=[8.2], cond_scale=[0.2], hidden=(16, 16)), _cvae_inputs
    if family == "cvae_sampler":
        cvae = ConditionalVAE(4, cond_centre=[8.2], cond_scale=[0.2], hidden=(16, 16))
        cvae.noise_scale.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
        return CVAESampler(cvae), lambda n: {
            "noise": RNG.normal(size=(n, 4 + 4)).astype(np.float32),
            "condition": RNG.uniform(2500, 4500, size=(n, 1)).astype(np.float32)}
    if family == "cvae_logit_sampler":  # logit box and mixture prior
        box = {"low": [-5.0, -5.0, -5.0, -5.0], "high": [5.0, 5.0, 5.0, 5.0]}
        cvae = ConditionalVAE(4, latent=2, cond_centre=[8.2], cond_scale=[0.2], hidden=(16, 16),
                              **box)
        cvae.noise_scale.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
        prior = ([0.3, 0.7], [[1.0, 0.0], [-1.0, 0.5]], [np.eye(2), 0.5 * np.eye(2)])
        return CVAESampler(cvae, prior), lambda n: {
            "noise": RNG.normal(size=(n, 2 + 4 + 1)).astype(np.float32),
            "condition": RNG.uniform(2500, 4500, size=(n, 1)).astype(np.float32)}
    if family == "cvae_logit":
        return (ConditionalVAE(4, cond_centre=[8.2], cond_scale=[0.2], hidden=(16, 16),
                               low=[-5.0] * 4, high=[5.0] * 4), _cvae_inputs)
    if family == "quantile":
        return (QuantileRegressor(1, quantiles=(0.3, 0.6, 0.9), centre=[8.0], scale=[0.3],
                                  target_centre=0.2, target_scale=0.1),
                lambda n: {"inputs": RNG.uniform(1500, 5000, size=(n, 1)).astype(np.float32)})
    if family == "pca":
        x = _dense(200)["features"]
        return fit_pca(x, n_components=3), _dense
    raise AssertionError(family)


FAMILIES = ["dense_ae", "vae", "vae_classifier", "particle_vae", "graph_ae", "graph_ae_weighted",
            "cvae", "cvae_sampler", "cvae_logit", "cvae_logit_sampler", "quantile", "pca"]


@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_runtime_matches_torch_at_another_batch_size(family, tmp_path):
    model, inputs = _build(family)
    path = export_onnx(model, inputs(TRACE), tmp_path / f"{family}.onnx",
                       output_names=model.output_names)
    graph = onnx.load(str(path)).graph
    for value in [*graph.input, *graph.output]:  # the batch axis is symbolic, not TRACE
        dim0 = value.type.tensor_type.shape.dim[0]
        assert dim0.dim_param == "batch", (value.name, dim0)
    check = inputs(CHECK)
    diffs = verify_onnx(model, path, check, rtol=1e-4, atol=1e-5)
    assert set(diffs) == set(model.output_names)
    # and an independent run (own session) gives the torch numbers at batch CHECK too
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, check)
    with torch.no_grad():
        ref = model(*[torch.as_tensor(v) for v in check.values()])
    ref = ref if isinstance(ref, tuple) else (ref,)
    for g, r in zip(got, ref, strict=True):
        assert g.shape[0] == CHECK
        np.testing.assert_allclose(g, r.numpy(), rtol=1e-4, atol=1e-5)
        assert np.all(np.isfinite(g))


def test_verify_onnx_reports_a_mismatch(tmp_path):
    model, inputs = _build("dense_ae")
    path = export_onnx(model, inputs(TRACE), tmp_path / "m.onnx", output_names=model.output_names)
    with torch.no_grad():  # change the torch weights after export: the check must fail
        model.decoder[0].bias += 1.0
    with pytest.raises(AssertionError, match="'loss' differs"):
        verify_onnx(model, path, inputs(CHECK))


def test_export_writes_a_contract_the_scorer_side_can_read(tmp_path):
    from coffea_ad.inference.contract import InputSpec, ModelContract, OutputSpec

    model, inputs = _build("dense_ae")
    names = ["eta", "phi", "mass", "ptd", "axis_major", "axis_minor"]
    contract = ModelContract(
        name="m", kind="autoencoder", level="jet",
        inputs=[InputSpec("features", names, [6], scaling="in_graph")],
        outputs=[OutputSpec("loss", "score"), OutputSpec("reconstruction", "reco", [6])],
        score="loss", opset=17)
    path = export_onnx(model, inputs(TRACE), tmp_path / "m.onnx",
                       output_names=model.output_names, contract=contract)
    back = ModelContract.read(path)
    assert back.features == names
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == back.input_names
    assert [o.name for o in sess.get_outputs()] == back.output_names


def test_cvae_mixture_prior_sampler_matches_a_numpy_reference(tmp_path):
    """The mixture-prior sampler graph (ONNX Runtime) draws the latent as the numpy reference
    does: component = number of cumulative weights below Φ(last noise column), z = μ_k + L_k ε;
    the components come with their weights' frequencies and z has the mixture's mean and
    covariance; decoding that z in torch gives ONNX Runtime's features."""
    from scipy.stats import norm

    torch.manual_seed(5)
    cvae = ConditionalVAE(4, latent=2, cond_centre=[8.2], cond_scale=[0.2], hidden=(16, 16))
    cvae.noise_scale.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    w = np.array([0.2, 0.5, 0.3])
    mu = np.array([[-3.0, 0.0], [0.0, 2.0], [4.0, -1.0]])
    chol = np.array([[[1.0, 0.0], [0.5, 0.3]], [[0.2, 0.0], [0.0, 0.2]],
                     [[0.7, 0.0], [-0.4, 0.9]]])
    sampler = CVAESampler(cvae, prior=(w, mu, chol))
    assert sampler.noise_width == 2 + 4 + 1
    rng = np.random.default_rng(11)
    n = 60_000
    noise = rng.normal(size=(n, 7)).astype(np.float32)
    cond = rng.uniform(2500, 4500, size=(n, 1)).astype(np.float32)
    path = export_onnx(sampler, {"noise": noise[:5], "condition": cond[:5]},
                       tmp_path / "s.onnx", output_names=sampler.output_names)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"noise": noise, "condition": cond})[0]
    # numpy reference of the latent
    u = norm.cdf(noise[:, -1].astype(np.float64))
    k = np.searchsorted(np.cumsum(w)[:-1], u, side="left")  # count of edges strictly below u
    z = mu[k] + np.einsum("nij,nj->ni", chol[k], noise[:, :2].astype(np.float64))
    freq = np.bincount(k, minlength=3) / n
    np.testing.assert_allclose(freq, w, atol=4 * np.sqrt(0.25 / n))
    mean = w @ mu
    cov = sum(wi * (c @ c.T + np.outer(m - mean, m - mean)) for wi, m, c in zip(w, mu, chol,
                                                                               strict=True))
    np.testing.assert_allclose(z.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(np.cov(z.T), cov, rtol=0.03, atol=0.03)
    with torch.no_grad():
        zt = torch.as_tensor(z, dtype=torch.float32)
        lat = sampler.latent(torch.as_tensor(noise)).numpy()
        mean_x = cvae.decode(zt, cvae.condition(torch.as_tensor(cond)))
        ref = cvae.scaler.inverse(mean_x + torch.as_tensor(noise[:, 2:6]) * cvae.noise_scale)
    np.testing.assert_allclose(lat, z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-4)


def test_cvae_logit_box_round_trip_and_bounds():
    """With a logit box the cVAE's feature map inverts exactly inside the box (numpy logit as
    the reference), and whatever the decoder outputs comes back inside the box."""
    from coffea_ad.nn.cvae import logit_box

    x = RNG.uniform([0.0, 0.1], [500.0, 0.9], size=(400, 2))
    low, high, y = logit_box(x)
    np.testing.assert_allclose(low, x.min(0) - 0.02 * (x.max(0) - x.min(0)))
    cvae = ConditionalVAE(2, latent=1, hidden=(8,), cond_centre=[8.2], cond_scale=[0.2],
                          centre=y.mean(0), scale=y.std(0), low=low, high=high)
    xt = torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        m = cvae.to_model(xt).numpy()
        back = cvae.from_model(torch.as_tensor(m)).numpy()
        wild = cvae.from_model(torch.as_tensor([[50.0, -50.0], [-3.0, 3.0]])).numpy()
    np.testing.assert_allclose(m, (y - y.mean(0)) / y.std(0), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(back, x, rtol=1e-4, atol=1e-3)
    assert np.all(wild >= low - 1e-3)
    assert np.all(wild <= high + 1e-3)
