"""Training tables from real CMS PFNano, against uproot + numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import uproot

from coffea_ad.nn.data import dijet_rows, iter_events, jet_rows, load_fileset, particle_rows


@pytest.fixture(scope="module")
def real(cms_data):
    path = str(cms_data / "pfnano.root")
    fs = load_fileset({"data": {"files": [path]}})
    (_, _, events), = list(iter_events(fs))
    branches = uproot.open(path)["Events"].arrays(
        ["FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass", "genWeight"], library="np")
    return events, branches


def _p4(pt, eta, phi, m):
    return np.array([np.sqrt((pt * np.cosh(eta)) ** 2 + m**2), pt * np.cos(phi),
                     pt * np.sin(phi), pt * np.sinh(eta)])


def test_dijet_rows_mjj_against_uproot(real):
    events, b = real
    rows = dijet_rows(events, ["mass", "tau21"], min_pt=200.0)
    ref_mjj, ref_events, ref_mass = [], [], []
    for i, (pt, eta, phi, m) in enumerate(zip(b["FatJet_pt"], b["FatJet_eta"], b["FatJet_phi"],
                                              b["FatJet_mass"], strict=True)):
        if len(pt) >= 2 and pt[1] > 200.0:
            e, px, py, pz = _p4(pt[0], eta[0], phi[0], m[0]) + _p4(pt[1], eta[1], phi[1], m[1])
            ref_mjj.append(np.sqrt(e**2 - px**2 - py**2 - pz**2))
            ref_events.append(i)
            ref_mass.append([m[0], m[1]])
    np.testing.assert_array_equal(rows["event"], ref_events)
    np.testing.assert_allclose(rows["mjj"], ref_mjj, rtol=1e-5)
    # columns: mass_j1, tau21_j1, mass_j2, tau21_j2
    np.testing.assert_allclose(rows["x"][:, [0, 2]], ref_mass, rtol=1e-6)
    np.testing.assert_array_equal(rows["weight"], b["genWeight"][ref_events].astype(np.float32))


def test_jet_rows_take_leading_jets_above_threshold(real):
    events, b = real
    rows = jet_rows(events, ["mass"], max_jets=2, min_pt=300.0, event_columns=["mt"])
    ref = [(i, j, m[j]) for i, (pt, m) in enumerate(zip(b["FatJet_pt"], b["FatJet_mass"],
                                                        strict=True))
           for j in range(min(2, len(pt))) if pt[j] > 300.0]
    np.testing.assert_array_equal(rows["event"], [r[0] for r in ref])
    np.testing.assert_array_equal(rows["jet_index"], [r[1] for r in ref])
    np.testing.assert_allclose(rows["x"][:, 0], [r[2] for r in ref], rtol=1e-6)
    # the event's m_T is copied onto both of its jets
    for ev in np.unique(rows["event"]):
        assert len(set(rows["mt"][rows["event"] == ev])) == 1


def test_particle_rows_mask_counts_and_order(real):
    events, _ = real
    rows = particle_rows(events, features=["deta", "dphi", "pt_frac"], n=30, min_pt=200.0)
    x, mask = rows["x"], rows["mask"]
    assert x.shape == (len(rows["event"]), 30, 3)
    assert mask.dtype == np.float32
    n_real = mask.sum(1).astype(int)
    assert np.all(n_real > 0)
    for row, k in zip(x, n_real, strict=True):
        frac = row[:k, 2]
        assert np.all(np.diff(frac) <= 1e-7)  # p_T-ordered
        assert np.all(row[k:] == 0.0)  # padding is 0
    # jets with at most 30 constituents carry all of their p_T
    full = n_real < 30
    np.testing.assert_allclose(x[full, :, 2].sum(1), 1.0, rtol=1e-5)
