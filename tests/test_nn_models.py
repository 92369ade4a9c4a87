"""Behaviour of the models, training loop and helpers, against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from coffea_ad.errors import UnknownNameError
from coffea_ad.nn.baselines import fit_boosted_trees, fit_pca
from coffea_ad.nn.cvae import ConditionalVAE
from coffea_ad.nn.data import split_indices
from coffea_ad.nn.dense import DenseAutoencoder
from coffea_ad.nn.fit import fit, predict
from coffea_ad.nn.graph_ae import GraphAutoencoder, delta_r_adjacency
from coffea_ad.nn.losses import kl_divergence, mse
from coffea_ad.nn.particle_vae import ParticleVAE
from coffea_ad.nn.quantile import QuantileRegressor
from coffea_ad.nn.recipe import flat_pt_weights, resolve_config
from coffea_ad.nn.scaling import standardization
from coffea_ad.nn.vae import VAE
from coffea_ad.stats.roc import auc

RNG = np.random.default_rng(5)


class _Constant(torch.nn.Module):
    """training_loss = (x - c)^2: the weighted optimum of c is the weighted mean of x."""

    def __init__(self):
        super().__init__()
        self.c = torch.nn.Parameter(torch.zeros(1))

    def training_loss(self, x):
        return (x - self.c).square()


def test_fit_minimizes_the_weighted_loss():
    x = RNG.normal(2.0, 1.0, size=400).astype(np.float32)
    w = np.where(x > 2.0, 3.0, 1.0).astype(np.float32)
    model = _Constant()
    hist = fit(model, [x], [x], train_weights=w, val_weights=w, epochs=150, batch_size=400,
               lr=0.1, patience=150, lr_patience=150, seed=0)
    assert float(model.c.detach()) == pytest.approx(np.average(x, weights=w), abs=1e-3)
    assert hist.val_loss[hist.best_epoch] == hist.best_val_loss == min(hist.val_loss)


def test_fit_is_seeded_and_restores_the_best_epoch():
    x = RNG.normal(size=(300, 4)).astype(np.float32)
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        model = DenseAutoencoder(4, hidden=(8,), latent=2)
        hist = fit(model, [x[:200]], [x[200:]], epochs=6, batch_size=32, seed=4, patience=2)
        runs.append((model, hist))
    (m1, h1), (m2, h2) = runs
    assert h1.train_loss == h2.train_loss
    assert h1.val_loss == h2.val_loss
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # the weights left in the model are those of the best epoch: their val loss is the best one
    val = float(predict(m1, [x[200:]])[0].mean())
    assert val == pytest.approx(h1.best_val_loss, rel=1e-5)


def test_fit_refuses_mismatched_or_empty_inputs():
    model = _Constant()
    with pytest.raises(ValueError, match="same first axis"):
        fit(model, [np.zeros(3, np.float32), np.zeros(4, np.float32)], [np.zeros(2, np.float32)])
    with pytest.raises(ValueError, match="non-empty"):
        fit(model, [np.zeros(0, np.float32)], [np.zeros(2, np.float32)])


def test_dense_ae_score_is_the_mae_of_standardized_features():
    centre, scale = np.array([1.0, -2.0, 50.0]), np.array([2.0, 0.5, 10.0])
    torch.manual_seed(0)
    model = DenseAutoencoder(3, hidden=(5,), latent=2, centre=centre, scale=scale).eval()
    x = RNG.normal(size=(9, 3)).astype(np.float32) * scale + centre
    loss, reco = predict(model, [x.astype(np.float32)])
    with torch.no_grad():
        x_std = torch.tensor((x - centre) / scale, dtype=torch.float32)
        r_std = model.decoder(model.encoder(x_std))
    np.testing.assert_allclose(reco, r_std.numpy() * scale + centre, rtol=1e-5)
    np.testing.assert_allclose(loss, np.abs(x_std.numpy() - r_std.numpy()).mean(1), rtol=1e-5)


def test_dense_ae_separates_off_manifold_rows():
    # background on a 2-d plane in 6-d; "signal" off the plane: the trained AE must rank it higher
    basis = RNG.normal(size=(2, 6))
    bkg = RNG.normal(size=(3000, 2)) @ basis + 0.05 * RNG.normal(size=(3000, 6))
    bkg = bkg.astype(np.float32)
    sig = (RNG.normal(size=(300, 2)) @ basis + RNG.normal(size=(300, 6))).astype(np.float32)
    c, s = standardization(bkg[:2000])
    torch.manual_seed(0)
    model = DenseAutoencoder(6, centre=c, scale=s)
    fit(model, [bkg[:2000]], [bkg[2000:2500]], epochs=40, batch_size=128, lr=3e-3, seed=0)
    assert auc(predict(model, [bkg[2500:]])[0], predict(model, [sig])[0]) > 0.9


def test_vae_scores_are_its_loss_terms():
    torch.manual_seed(0)
    x = torch.tensor(RNG.normal(size=(11, 5)), dtype=torch.float32)
    state = VAE(5, latent=3).state_dict()
    for score in ("reconstruction", "kl", "combined"):
        model = VAE(5, latent=3, beta=0.3, score=score)
        model.load_state_dict(state)
        model.eval()
        with torch.no_grad():
            s, _reco, mu, logvar = model(x)
            ref_reco = mse(x, model.decoder(mu))
            ref_kl = kl_divergence(mu, logvar)
        ref = {"reconstruction": ref_reco, "kl": ref_kl, "combined": ref_reco + 0.3 * ref_kl}[score]
        np.testing.assert_allclose(s.numpy(), ref.numpy(), rtol=1e-6)
    with pytest.raises(UnknownNameError, match="valid VAE scores: combined, kl, reconstruction"):
        VAE(5, score="recon")


def test_particle_vae_ignores_padding_and_order():
    torch.manual_seed(0)
    model = ParticleVAE(3, 6, n_out=5, hidden=8, latent=2).eval()
    x = torch.tensor(RNG.normal(size=(1, 6, 3)), dtype=torch.float32)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]], dtype=torch.float32)
    garbage = x.clone()
    garbage[0, 4:] = 1e4
    nan = x.clone()
    nan[0, 4:] = float("nan")
    perm = x[:, [2, 0, 3, 1, 4, 5]]
    with torch.no_grad():
        outs = [model(v, mask)[0] for v in (x, garbage, nan, perm)]
    np.testing.assert_allclose(outs[1].numpy(), outs[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(outs[2].numpy(), outs[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(outs[3].numpy(), outs[0].numpy(), rtol=1e-5)


def test_delta_r_adjacency_against_loop():
    n = 7
    eta = RNG.normal(scale=0.1, size=(2, n))
    phi = RNG.normal(scale=0.1, size=(2, n))
    phi[1, :3] += math.pi - 0.05  # straddle the ±π boundary after wrapping
    phi = (phi + math.pi) % (2 * math.pi) - math.pi
    mask = np.ones((2, n))
    mask[0, 5:] = 0
    for kind in ("hard", "weighted"):
        got = delta_r_adjacency(torch.tensor(eta), torch.tensor(phi), torch.tensor(mask),
                                r_c=0.12, kind=kind).numpy()
        for b in range(2):
            for i in range(n):
                for j in range(n):
                    dphi = abs(phi[b, i] - phi[b, j])
                    dphi = min(dphi, 2 * math.pi - dphi)
                    dr = math.hypot(eta[b, i] - eta[b, j], dphi)
                    ref = float(dr < 0.12) if kind == "hard" else math.exp(-dr**2 / (2 * 0.12**2))
                    assert got[b, i, j] == pytest.approx(ref * mask[b, i] * mask[b, j], abs=1e-12)
    assert got[1, 0, 1] > 0.3  # two constituents across φ = ±π are neighbours


def test_graph_ae_ignores_padding():
    torch.manual_seed(0)
    model = GraphAutoencoder(4, 6, r_c=0.3, hidden=(8,), latent=2).eval()
    x = torch.tensor(RNG.normal(scale=0.2, size=(2, 6, 4)), dtype=torch.float32)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.float32)
    garbage = x.clone()
    garbage[0, 3:] = 0.0  # padding near the real constituents in η/φ ...
    far = x.clone()  # ... far away, or NaN: none may change the score
    far[0, 3:] = 50.0
    nan = x.clone()
    nan[0, 3:] = float("nan")
    with torch.no_grad():
        l0, _r0 = model(garbage, mask)
        l1, r1 = model(far, mask)
        l2, _r2 = model(nan, mask)
    np.testing.assert_allclose(l0.numpy(), l1.numpy(), rtol=1e-6)
    np.testing.assert_allclose(l2.numpy(), l1.numpy(), rtol=1e-6)
    assert torch.all(r1[0, 3:] == 0)


def test_quantile_regression_covers_its_quantiles():
    # y ~ Exp(scale = m / 1000): the tau-quantile is -scale * log(1 - tau)
    m = RNG.uniform(1500, 5000, size=6000).astype(np.float32)
    y = (RNG.exponential(size=6000) * m / 1000).astype(np.float32)
    taus = (0.5, 0.9)
    lm = np.log(m)
    torch.manual_seed(0)
    model = QuantileRegressor(1, quantiles=taus, hidden=(16, 16), centre=[lm.mean()],
                              scale=[lm.std()], target_centre=float(y.mean()),
                              target_scale=float(y.std()))
    fit(model, [m[:5000, None], y[:5000]], [m[5000:, None], y[5000:]], epochs=60,
        batch_size=256, lr=5e-3, seed=0, patience=15)
    grid = np.array([[2000.0], [4000.0]], np.float32)
    q = predict(model, [grid])[0]
    truth = -(grid / 1000) * np.log(1 - np.array(taus))
    np.testing.assert_allclose(q, truth, rtol=0.15)
    assert np.all(np.diff(q, axis=1) > 0)


def test_cvae_samples_follow_the_condition():
    # feature = m / 1000 + noise: samples at a given m must centre on m / 1000
    m = RNG.uniform(2000, 4000, size=4000).astype(np.float32)
    x = np.stack([m / 1000 + 0.1 * RNG.normal(size=4000), RNG.normal(size=4000)], 1)
    x = x.astype(np.float32)
    c, s = standardization(x)
    lm = np.log(m)
    torch.manual_seed(0)
    model = ConditionalVAE(2, hidden=(16, 16), latent=2, beta=0.5, centre=c, scale=s,
                           cond_centre=[lm.mean()], cond_scale=[lm.std()])
    fit(model, [x[:3500], m[:3500, None]], [x[3500:], m[3500:, None]], epochs=40,
        batch_size=128, lr=3e-3, seed=0)
    model.calibrate_noise(x[:3500], m[:3500, None])
    gen = torch.Generator().manual_seed(0)
    for mass in (2500.0, 3500.0):
        sample = model.sample(np.full((2000, 1), mass, np.float32), generator=gen).numpy()
        assert sample[:, 0].mean() == pytest.approx(mass / 1000, abs=0.06)
        # the spread at fixed m_jj is the data's (0.1 and 1), not the decoder mean's alone
        assert sample[:, 0].std() == pytest.approx(0.1, rel=0.35)
        assert sample[:, 1].std() == pytest.approx(1.0, rel=0.2)


def test_pca_baseline_equals_sklearn():
    from sklearn.decomposition import PCA

    x = (RNG.normal(size=(500, 5)) @ RNG.normal(size=(5, 5))).astype(np.float32)
    model = fit_pca(x, n_components=2)
    loss, reco = predict(model, [x])
    c, s = standardization(x)
    z = (x - c) / s
    pca = PCA(n_components=2, random_state=0).fit(z)
    back = pca.inverse_transform(pca.transform(z))
    np.testing.assert_allclose(loss, ((z - back) ** 2).mean(1), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(reco, back * s + c, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="n_components < 5"):
        fit_pca(x, n_components=5)


def test_boosted_trees_baseline_separates():
    bkg = RNG.normal(size=(2000, 3))
    sig = RNG.normal(size=(300, 3)) + np.array([1.5, 0, 0])
    clf = fit_boosted_trees(bkg[:1500], sig[:200], max_iter=50)
    value = auc(clf.predict_proba(bkg[1500:])[:, 1], clf.predict_proba(sig[200:])[:, 1])
    assert 0.8 < value < 0.98  # the Bayes AUC of a 1.5σ shift is Φ(1.5/√2) = 0.856


def test_split_indices_is_seeded_grouped_and_complete():
    groups = np.repeat(np.arange(500), 2)  # two jets per event
    a = split_indices(1000, val_fraction=0.2, test_fraction=0.1, seed=3, groups=groups)
    b = split_indices(1000, val_fraction=0.2, test_fraction=0.1, seed=3, groups=groups)
    c = split_indices(1000, val_fraction=0.2, test_fraction=0.1, seed=4, groups=groups)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert sorted(np.concatenate(a)) == list(range(1000))
    assert [len(i) for i in a] == [700, 200, 100]
    sets = [set(groups[i]) for i in a]
    assert not (sets[0] & sets[1])
    assert not (sets[0] & sets[2])
    assert not (sets[1] & sets[2])


def test_standardization_matches_sklearn_and_ignores_padding():
    from sklearn.preprocessing import StandardScaler

    x = RNG.normal(3, 2, size=(300, 3))
    w = RNG.uniform(0.1, 3, size=300)
    c, s = standardization(x, weights=w)
    ref = StandardScaler().fit(x, sample_weight=w)
    np.testing.assert_allclose(c, ref.mean_, rtol=1e-6)
    np.testing.assert_allclose(s, ref.scale_, rtol=1e-5)
    padded = np.zeros((100, 4, 3))
    padded[:, :3] = x.reshape(100, 3, 3)
    mask = np.zeros((100, 4), bool)
    mask[:, :3] = True
    c2, s2 = standardization(padded, mask=mask)
    np.testing.assert_allclose(c2, x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(s2, x.std(0), rtol=1e-5)
    assert standardization(np.ones((5, 1)))[1][0] == 1.0  # constant feature: scale 1


def test_flat_pt_weights_flatten_the_spectrum():
    pt = RNG.exponential(300, size=20000) + 200
    w = flat_pt_weights(pt, bins=20)
    counts, _ = np.histogram(pt, bins=np.quantile(pt, np.linspace(0, 0.95, 11)), weights=w)
    widths = np.diff(np.quantile(pt, np.linspace(0, 0.95, 11)))
    density = counts / widths
    assert density.max() / density.min() < 1.3  # raw spectrum falls by ~e^-3 over this range
    assert w.mean() == pytest.approx(1.0)


def test_resolve_config_names_the_valid_keys():
    cfg = resolve_config({"hidden": [10, 10], "lr": 1e-3}, {"hidden": "20,5"}, recipe="x")
    assert cfg == {"hidden": [20, 5], "lr": 1e-3}
    msg = "unknown x config key 'hiden'; valid x config keys: hidden, lr"
    with pytest.raises(UnknownNameError, match=msg):
        resolve_config({"hidden": [10, 10], "lr": 1e-3}, {"hiden": 3}, recipe="x")


def test_disco_penalty_decorrelates_the_score_from_a_mass():
    """Background whose structure depends on a mass-like variable: with the DisCo penalty the
    AE loss carries less information about that variable (Kasieczka & Shih 2001.05310)."""
    from coffea_ad.nn.losses import distance_correlation
    from coffea_ad.stats.decorrelation import distance_correlation as dcor

    n = 3000
    mass = RNG.uniform(0, 1, size=n)
    x = RNG.normal(size=(n, 4)) * (0.2 + mass[:, None])  # spread grows with the mass
    x = x.astype(np.float32)
    mass = mass.astype(np.float32)
    c, s = standardization(x[:2000])
    results = {}
    for lam in (0.0, 20.0):
        torch.manual_seed(0)
        model = DenseAutoencoder(4, hidden=(8,), latent=2, centre=c, scale=s)

        def penalty(per_row, aux, w, lam=lam):
            return lam * distance_correlation(per_row, aux[0], weights=w)

        fit(model, [x[:2000]], [x[2000:2500]], epochs=15, batch_size=256, lr=3e-3, seed=0,
            penalty=penalty if lam else None, aux_train=[mass[:2000]],
            aux_val=[mass[2000:2500]])
        results[lam] = dcor(predict(model, [x[2500:]])[0], mass[2500:])
    assert results[0.0] > 0.3  # without DisCo the loss tracks the mass
    assert results[20.0] < 0.5 * results[0.0]
