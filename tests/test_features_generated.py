"""Features on generated PFNano-format jets (the ``small_fileset`` session fixture: Pythia8 QCD
and semivisible-jet events), against per-jet loops and fastjet-contrib's EnergyCorrelator."""

from __future__ import annotations

import math
import warnings

import awkward as ak
import numpy as np
import pytest

from coffea_ad.features import JET_FEATURES, jet_constituents, jet_features


def load(path):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cross-references the sample lacks
        return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema,
                                           mode="virtual").events()


def wrap(x):
    return (x + math.pi) % (2 * math.pi) - math.pi


def loop_reference(jet, cands):
    """pTD, axes, girth, LHA, e2/e3 (β = 1) of one jet from the formulas, in plain Python."""
    pt = [c["pt"] for c in cands]
    total = sum(pt)
    ptd = math.sqrt(sum(p * p for p in pt)) / total
    dphi = np.array([wrap(c["phi"] - jet["phi"]) for c in cands])
    eta = np.array([c["eta"] for c in cands])
    cov = np.cov(np.vstack([eta, dphi]), aweights=np.array(pt) ** 2, bias=True)
    low, high = np.linalg.eigvalsh(cov)
    dr = [math.hypot(c["eta"] - jet["eta"], wrap(c["phi"] - jet["phi"])) for c in cands]
    girth = sum(p * r for p, r in zip(pt, dr, strict=True)) / total
    lha = sum(p / total * math.sqrt(r / 0.8) for p, r in zip(pt, dr, strict=True))
    y = [math.asinh(c["pt"] * math.sinh(c["eta"]) / math.hypot(c["pt"], c["mass"]))
         for c in cands]
    z = [p / total for p in pt]
    n = len(z)
    r = [[math.hypot(y[i] - y[j], abs(wrap(cands[i]["phi"] - cands[j]["phi"])))
          for j in range(n)] for i in range(n)]
    e2 = sum(z[i] * z[j] * r[i][j] for i in range(n) for j in range(i + 1, n))
    e3 = sum(z[i] * z[j] * z[k] * r[i][j] * r[i][k] * r[j][k]
             for i in range(n) for j in range(i + 1, n) for k in range(j + 1, n))
    return {"ptd": ptd, "axis_major": math.sqrt(max(high, 0)),
            "axis_minor": math.sqrt(max(low, 0)), "girth": girth, "lha": lha,
            "e2_b1": e2, "e3_b1": e3}


@pytest.mark.parametrize("dataset", ["qcd", "svj"])
def test_generated_jets_match_loops(small_fileset, dataset):
    path = next(iter(small_fileset[dataset]["files"]))
    events = load(path)[:40]
    names = ["ptd", "axis_major", "axis_minor", "girth", "lha", "e2_b1", "e3_b1"]
    feats = ak.flatten(jet_features(events, names), axis=1)
    jets = ak.flatten(events.FatJet, axis=1)
    cons = ak.flatten(jet_constituents(events), axis=1)
    checked = 0
    for i in range(min(len(jets), 30)):
        cands = [c for c in cons[i].tolist() if c["pt"] > 0]
        if len(cands) < 3 or len(cands) > 60:  # the Python triple loop is slow beyond that
            continue
        want = loop_reference(jets[i].tolist(), cands)
        for name in names:
            assert feats[i][name] == pytest.approx(want[name], rel=1e-6, abs=1e-12), name
        checked += 1
    assert checked >= 5


def test_generated_jets_all_features_finite_and_c2_matches_fastjet(small_fileset):
    fastjet = pytest.importorskip("fastjet")
    path = next(iter(small_fileset["svj"]["files"]))
    events = load(path)
    feats = jet_features(events, list(JET_FEATURES))
    for name in JET_FEATURES:
        assert np.all(np.isfinite(ak.to_numpy(ak.flatten(feats[name])))), name
    cons = ak.flatten(jet_constituents(events), axis=1)
    cons = cons[ak.num(cons) > 0]
    pt, eta, phi, mass = (ak.values_astype(cons[f], np.float64)
                          for f in ("pt", "eta", "phi", "mass"))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    particles = ak.zip({"px": px, "py": py, "pz": pz,
                        "E": np.sqrt(px**2 + py**2 + pz**2 + mass**2)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seq = fastjet.ClusterSequence(particles,
                                      fastjet.JetDefinition(fastjet.antikt_algorithm, 100.0))
        c2 = seq.exclusive_jets_energy_correlator(njets=1, beta=1.0, npoint=2, func="c2")
        d2 = seq.exclusive_jets_energy_correlator(njets=1, beta=1.0, npoint=2, func="d2")
    has = ak.to_numpy(ak.flatten(ak.num(jet_constituents(events), axis=2)) > 0)
    ours = ak.flatten(feats)[has]
    np.testing.assert_allclose(ak.to_numpy(ours["c2_b1"]),
                               np.nan_to_num(ak.to_numpy(ak.flatten(c2, axis=None))), rtol=1e-6)
    np.testing.assert_allclose(ak.to_numpy(ours["d2_b1"]),
                               np.nan_to_num(ak.to_numpy(ak.flatten(d2, axis=None))), rtol=1e-6)
    assert len(ours) > 100
