"""LHCO-like recipe, inputs, regions, k-folded classifiers and conditional density estimators."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def lhco_small(tmp_path_factory):
    """The ``lhco`` recipe at its smallest useful size: 40 dijet, 2 + 1 signal events."""
    pytest.importorskip("pythia8mc")
    pytest.importorskip("fastjet")
    from click.testing import CliRunner

    from coffea_ad.cli.generate import generate

    out = tmp_path_factory.mktemp("lhco")
    res = CliRunner().invoke(generate, ["lhco", "-n", "40", "-s", "3", "-o", str(out),
                                        "--events-per-file", "20", "--no-progress"])
    assert res.exit_code == 0, res.output
    return out, json.loads((out / "fileset.json").read_text())


def test_lhco_recipe_datasets_settings_and_phase_space(lhco_small):
    out, fs = lhco_small
    assert set(fs) == {"lhco_qcd", "lhco_xy2", "lhco_xy3"}
    q = fs["lhco_qcd"]["metadata"]
    assert q["process"] == "dijet"
    assert q["nevents"] == 40
    assert len(fs["lhco_qcd"]["files"]) == 2
    assert (q["settings"]["mhat_min"], q["settings"]["mhat_max"], q["settings"]["pthat_min"]) \
        == (2800.0, 4500.0, 1100.0)
    assert fs["lhco_xy2"]["metadata"]["nevents"] == 2
    assert fs["lhco_xy3"]["metadata"]["nevents"] == 1
    assert fs["lhco_xy2"]["metadata"]["settings"]["mzprime"] == 3500.0
    # the hard process sits inside the m̂ window: the two leading FatJets' mass (FSR out of the
    # cone lowers it) is below m̂_max and, with p̂T > 1.1 TeV, the leading jet is hard
    import awkward as ak
    import uproot
    import vector

    vector.register_awkward()
    for path in fs["lhco_qcd"]["files"]:
        a = uproot.open(path)["Events"].arrays(["FatJet_pt", "FatJet_eta", "FatJet_phi",
                                                "FatJet_mass"])
        assert ak.all(ak.num(a.FatJet_pt) >= 2)
        j = ak.zip({"pt": a.FatJet_pt, "eta": a.FatJet_eta, "phi": a.FatJet_phi,
                    "mass": a.FatJet_mass}, with_name="Momentum4D")
        mjj = ak.to_numpy((j[:, 0] + j[:, 1]).mass)
        assert np.all(mjj < 5000.0)
        assert np.median(mjj) > 2400.0
        assert np.median(ak.to_numpy(j[:, 0].pt)) > 1000.0
    # resumable: a second call reuses every file
    from click.testing import CliRunner

    from coffea_ad.cli.generate import generate

    before = {p: (out / p).stat().st_mtime_ns for p in ("lhco_qcd/lhco_qcd_0000.root",)}
    res = CliRunner().invoke(generate, ["lhco", "-n", "40", "-s", "3", "-o", str(out),
                                        "--events-per-file", "20", "--no-progress"])
    assert res.exit_code == 0
    assert all((out / p).stat().st_mtime_ns == t for p, t in before.items())


def test_lhco_rows_match_a_plain_loop_over_the_branches(lhco_small):
    import uproot

    from coffea_ad.nn.data import lhco_rows, load_rows

    _, fs = lhco_small
    rows = load_rows(fs, lhco_rows, datasets=["lhco_xy2", "lhco_qcd"], tau32=True,
                     lead_pt_min=1000.0)
    for name in ("lhco_xy2", "lhco_qcd"):
        t = rows[name]
        expect, mjj, lead = [], [], []
        for path in fs[name]["files"]:
            a = uproot.open(path)["Events"].arrays(library="np")
            for i in range(len(a["FatJet_pt"])):
                pt = a["FatJet_pt"][i]
                if len(pt) < 2 or pt[0] <= 1000.0:
                    continue
                m = a["FatJet_mass"][i][:2]
                t1, t2, t3 = (a[f"FatJet_tau{k}"][i][:2] for k in (1, 2, 3))
                lo, hi = (0, 1) if m[0] <= m[1] else (1, 0)
                r21 = [t2[j] / t1[j] if t1[j] > 0 else 0.0 for j in (lo, hi)]
                r32 = [t3[j] / t2[j] if t2[j] > 0 else 0.0 for j in (lo, hi)]
                expect.append([m[lo], m[hi] - m[lo], *r21, *r32])
                lead.append(pt[0])
                e = a["FatJet_eta"][i][:2]
                p = a["FatJet_phi"][i][:2]
                px, py = pt[:2] * np.cos(p), pt[:2] * np.sin(p)
                pz = pt[:2] * np.sinh(e)
                en = np.sqrt(px**2 + py**2 + pz**2 + m**2)
                mjj.append(np.sqrt(en.sum()**2 - px.sum()**2 - py.sum()**2 - pz.sum()**2))
        assert len(t["x"]) == len(expect) > 0
        np.testing.assert_allclose(t["x"], np.array(expect), rtol=2e-5, atol=1e-3)
        np.testing.assert_allclose(t["mjj"], mjj, rtol=1e-4)
        np.testing.assert_allclose(t["pt_j1"], lead, rtol=1e-6)
        assert np.all(t["x"][:, 1] >= 0)


def test_region_masks_edges_by_hand():
    from coffea_ad.stats.weak import region_masks

    m = np.array([2999.0, 3000.0, 3299.9, 3300.0, 3500.0, 3700.0, 4299.0, 4300.0])
    sr, sb = region_masks(m, (3300, 3700), (3000, 4300))
    assert sr.tolist() == [False, False, False, True, True, False, False, False]
    assert sb.tolist() == [False, True, True, False, False, True, True, False]
    sr, sb = region_masks(m, (3300, 3700))
    assert sb.tolist() == [True, True, True, False, False, True, True, True]
    with pytest.raises(ValueError, match="contain the signal region"):
        region_masks(m, (3300, 3700), (3400, 4300))


def test_sic_at_background_efficiency_by_hand():
    from coffea_ad.stats.weak import sic_at_background_efficiency

    b = np.arange(100, dtype=float)  # cut keeping 10 %: score >= 90
    s = np.array([95.0, 91.0, 90.0, 50.0])  # 3 of 4 pass
    np.testing.assert_allclose(sic_at_background_efficiency(b, s, [0.1]), [0.75 / np.sqrt(0.1)])
    # 1 %: score >= 99 -> no signal passes
    np.testing.assert_allclose(sic_at_background_efficiency(b, s, [0.01]), [0.0])


def test_kfold_classifier_is_out_of_fold_and_finds_a_real_difference():
    pytest.importorskip("sklearn")
    from coffea_ad.stats.weak import _folds, kfold_classifier

    rng = np.random.default_rng(1)
    same0, same1 = rng.normal(size=(800, 3)), rng.normal(size=(800, 3))
    # identical distributions: a classifier scored on its own training rows would find
    # AUC well above 0.5 (boosted trees memorise); out of fold it must not
    r = kfold_classifier(same1, same0, k=3, seed=0, max_iter=50)
    assert abs(r.auc - 0.5) < 0.05
    shifted = rng.normal(loc=[1.0, 0.0, 0.0], size=(800, 3))
    r = kfold_classifier(shifted, same0, k=3, seed=0, max_iter=50,
                         extra={"far": np.tile([3.0, 0.0, 0.0], (10, 1))})
    # Gaussian mean shift of 1: AUC = Φ(1/√2) = 0.760
    assert abs(r.auc - 0.760) < 0.04
    assert np.all(r.extra["far"] > 0.7)  # true ratio there: e^(3 - 1/2) / (1 + e^2.5) = 0.92
    # groups: rows with one label land in one fold
    g = np.array([5, 7, 5, 9, 7, 5, 11, 13])
    f = _folds(len(g), 3, np.random.default_rng(0), g)
    for label in np.unique(g):
        assert len(set(f[g == label])) == 1


@pytest.mark.parametrize("kind", ["flow", "cvae", "cvae-prior"])
def test_density_estimators_follow_the_requested_mjj(kind):
    """Toy background whose first feature's mean moves with m_jj: samples drawn at two
    requested m_jj values reproduce both means (the sampler is conditioned), and a
    seed gives the same template twice."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("zuko")
    from coffea_ad.nn.fit import fit
    from coffea_ad.nn.flow import ConditionalFlow, LatentCVAE

    rng = np.random.default_rng(0)
    n = 4000
    m = rng.uniform(3000.0, 4300.0, n).astype(np.float32)
    x = np.stack([100.0 + 0.1 * (m - 3000.0) + rng.normal(0, 10.0, n),  # mean 100 .. 230
                  rng.beta(4, 2, n)], axis=1).astype(np.float32)
    torch.manual_seed(0)
    if kind == "flow":
        model = ConditionalFlow(x, m, transforms=2, hidden=(32, 32))
    elif kind == "cvae":
        model = LatentCVAE(x, m, hidden=(32, 32), latent=2, beta=0.5)
    else:
        model = LatentCVAE(x, m, hidden=(32, 32), latent=2, beta=0.02, prior_components=3)
    fit(model, [x[:3200], m[:3200]], [x[3200:], m[3200:]], epochs=25, batch_size=128,
        lr=3e-3, patience=5, seed=0, threads=1)
    if kind.startswith("cvae"):
        model.calibrate_noise(x, m)
    if kind == "cvae-prior":
        model.fit_latent_prior(x, m, seed=0)
        # the mixture reproduces the encoded rows' mean and covariance (a GMM's moments
        # match its data's at the maximum likelihood), which differ from N(0, 1) at small beta
        z = model.encode(x, m, seed=0)
        w, mu, ch = (t.numpy().astype(np.float64) for t in
                     (model.prior_weights, model.prior_means, model.prior_chol))
        mean = w @ mu
        cov = sum(wk * (c @ c.T + np.outer(mk - mean, mk - mean))
                  for wk, mk, c in zip(w, mu, ch, strict=True))
        np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-5)
        np.testing.assert_allclose(mean, z.mean(0), atol=0.02 * z.std(0).max())
        np.testing.assert_allclose(cov, np.cov(z.T), rtol=0.05, atol=0.01 * np.cov(z.T).max())
    for mass, mean in ((3100.0, 110.0), (4200.0, 220.0)):
        s = model.sample(np.full(3000, mass), seed=1)
        assert abs(s[:, 0].mean() - mean) < 8.0, (mass, s[:, 0].mean())
        assert s[:, 1].min() > 0.0
        assert s[:, 1].max() < 1.05
    a, b = model.sample(np.full(50, 3500.0), seed=7), model.sample(np.full(50, 3500.0), seed=7)
    np.testing.assert_array_equal(a, b)


def test_event_normals_are_a_function_of_the_event_and_standard_normal():
    from scipy import stats

    from coffea_ad.inference.noise import event_normals, splitmix64

    # SplitMix64 reference values (the generator seeded with 0 gives these first two outputs)
    assert int(splitmix64(np.array([0], np.uint64))[0]) == 0xE220A8397B1DCDAF
    assert int(splitmix64(np.array([0x9E3779B97F4A7C15], np.uint64))[0]) == 0x6E789E6AA1B965F4
    run = np.ones(4000, np.uint32)
    lumi = np.repeat(np.arange(1, 5, dtype=np.uint32), 1000)
    event = np.arange(4000, dtype=np.uint64) + 1
    z = event_normals(3, run, lumi, event, width=5, copies=2)
    assert z.shape == (8000, 5)
    # any sub-selection of events (another chunking) gets the same rows
    pick = np.array([17, 3999, 2])
    sub = event_normals(3, run[pick], lumi[pick], event[pick], width=5, copies=2)
    np.testing.assert_array_equal(sub, z.reshape(4000, 2, 5)[pick].reshape(6, 5))
    assert stats.kstest(z.ravel(), "norm").pvalue > 1e-3
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.03
    # another seed, other numbers
    assert not np.allclose(event_normals(4, run[:10], lumi[:10], event[:10], 5), z[:20:2])


class _PointMass:
    """A conditional 'estimator' of a point mass at (c, m_jj/1000): the simplest object with
    the samplers' ``sample(mjj, seed=...)`` interface, to see which member drew each row."""

    def __init__(self, c: float):
        self.c = c

    def sample(self, mjj, *, seed=0):
        mjj = np.asarray(mjj, np.float32)
        return np.stack([np.full(len(mjj), self.c, np.float32), mjj / 1000.0], axis=1)


def test_ensemble_sampler_is_an_equal_mixture_and_deterministic():
    pytest.importorskip("torch")
    from coffea_ad.nn.flow import EnsembleSampler

    ens = EnsembleSampler([_PointMass(0.0), _PointMass(1.0), _PointMass(2.0)])
    m = np.linspace(3000.0, 4000.0, 1001)
    s = ens.sample(m, seed=5)
    # each row comes from one member, at its own m_jj (the condition follows the row)
    np.testing.assert_allclose(s[:, 1], m / 1000.0, rtol=1e-6)
    counts = np.bincount(s[:, 0].astype(int), minlength=3)
    assert sorted(counts) == [333, 334, 334]  # 1001 rows over 3 members
    np.testing.assert_array_equal(s, ens.sample(m, seed=5))
    assert not np.array_equal(s[:, 0], ens.sample(m, seed=6)[:, 0])
    # the member of row i is a fixed function of (n, seed), and a flow member is drawn with
    # its own derived seed: the ensemble of one flow equals the flow with that seed
    torch = pytest.importorskip("torch")
    pytest.importorskip("zuko")
    from coffea_ad.nn.flow import ConditionalFlow

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    torch.manual_seed(0)
    flow = ConditionalFlow(x, rng.uniform(3000, 4000, 200), transforms=1, hidden=(8,))
    one = EnsembleSampler([flow])
    np.testing.assert_array_equal(one.sample(m[:20], seed=3),
                                  flow.sample(m[:20], seed=int(one.member_seeds(3)[0])))
