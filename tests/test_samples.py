"""The generated samples (coffea_ad.samples): format, physics, reproducibility, resumability.

Physics is checked on small generated samples read back through coffea's PFNanoAODSchema;
the format is checked against the real CMS ``pfnano.root``.
"""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")

from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

from coffea_ad.samples import resolve_settings

# our files carry a subset of PFNano: coffea warns about every cross-reference it cannot build
pytestmark = pytest.mark.filterwarnings("ignore:Missing cross-reference:RuntimeWarning")


def events_of(fileset: dict, dataset: str):
    files = fileset[dataset]["files"]
    return NanoEventsFactory.from_root(files, schemaclass=PFNanoAODSchema, mode="virtual").events()


def np_(array) -> np.ndarray:
    return np.asarray(ak.to_numpy(array))


def delta_phi(a, b):
    return (a - b + np.pi) % (2 * np.pi) - np.pi


# ------------------------------------------------------------------------------ fileset
def test_small_fileset_metadata_and_json(small_fileset):
    assert set(small_fileset) == {"qcd", "svj"}
    qcd, svj = small_fileset["qcd"]["metadata"], small_fileset["svj"]["metadata"]
    assert (qcd["nevents"], svj["nevents"]) == (400, 300)
    assert (qcd["is_signal"], svj["is_signal"]) == (False, True)
    assert svj["settings"]["mzprime"] == 3000.0
    assert svj["settings"]["rinv"] == 0.3
    assert qcd["settings"] == resolve_settings("qcd")
    # unweighted samples: genWeight == 1, so the sum of weights is the event count
    assert qcd["sumw"] == pytest.approx(400.0)
    # hard QCD above 500 GeV at 13.6 TeV: O(1 nb); a wrong pT cut or unit would be off by 10^3+
    assert 100.0 < qcd["xsec"] < 5000.0
    # SVJ 3 TeV with g_q = 0.25: O(10-100 fb)
    assert 1e-3 < svj["xsec"] < 1.0
    for entry in small_fileset.values():
        for path, tree in entry["files"].items():
            assert Path(path).is_absolute()
            assert Path(path).is_file()
            assert tree == "Events"
    folder = Path(next(iter(small_fileset["qcd"]["files"]))).parents[1]
    on_disk = json.loads((folder / "fileset.json").read_text())
    assert on_disk == json.loads(json.dumps(small_fileset))
    with uproot.open(next(iter(small_fileset["qcd"]["files"]))) as f:
        runs = f["Runs"].arrays(library="np")
        assert runs["genEventCount"].tolist() == [400]
        assert runs["genEventSumw"][0] == pytest.approx(qcd["sumw"])


# ------------------------------------------------------------------------------ format
REQUIRED = [
    "run", "luminosityBlock", "event", "genWeight",
    "nFatJet", "FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass", "FatJet_msoftdrop",
    "FatJet_tau1", "FatJet_tau2", "FatJet_tau3", "FatJet_tau4", "FatJet_nConstituents",
    "nJet", "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_nConstituents",
    "nPFCands", "PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass", "PFCands_pdgId",
    "PFCands_charge", "PFCands_d0", "PFCands_dz",
    "nFatJetPFCands", "FatJetPFCands_jetIdx", "FatJetPFCands_pFCandsIdx",
    "nJetPFCands", "JetPFCands_jetIdx", "JetPFCands_pFCandsIdx",
    "nElectron", "Electron_pt", "nMuon", "Muon_pt", "MET_pt", "MET_phi",
    "FatJet_isDark", "FatJet_isResonance",
]


def _dtypes(tree) -> dict[str, np.dtype]:
    out = {}
    for name, branch in tree.items():
        interp = branch.interpretation
        inner = getattr(interp, "content", interp)
        out[name] = np.dtype(inner.from_dtype).newbyteorder(">") if hasattr(inner, "from_dtype") else None
    return out


def test_branch_names_and_dtypes_match_real_pfnano(small_fileset, pfnano_file):
    ours_path = next(iter(small_fileset["svj"]["files"]))
    with uproot.open(ours_path) as f, uproot.open(pfnano_file) as g:
        ours, real = _dtypes(f["Events"]), _dtypes(g["Events"])
    missing = [b for b in REQUIRED if b not in ours]
    assert not missing, f"generated file lacks {missing}"
    common = sorted(set(ours) & set(real))
    assert len(common) >= 45  # the comparison is not vacuous
    mismatched = {b: (str(ours[b]), str(real[b])) for b in common if ours[b] != real[b]}
    assert not mismatched, f"dtype differs from real PFNano (ours, real): {mismatched}"
    # the NanoAOD counters are UInt_t
    assert ours["nFatJet"] == np.dtype(">u4")
    assert ours["nPFCands"] == np.dtype(">u4")


def test_fatjet_constituents_sum_back_to_jet(small_fileset):
    for dataset in ("qcd", "svj"):
        ev = events_of(small_fileset, dataset)
        fj = ev.FatJet
        pf = fj.constituents.pf
        assert np_(ak.flatten(ak.num(pf, axis=2))).tolist() == np_(ak.flatten(fj.nConstituents)).tolist()
        # E-scheme anti-kT: the jet 4-vector is the sum of its constituents (float32 storage)
        for comp in ("px", "py", "pz", "energy"):
            total = np_(ak.flatten(ak.sum(getattr(pf, comp), axis=2)))
            jet = np_(ak.flatten(getattr(fj, comp)))
            assert np.allclose(total, jet, rtol=2e-4, atol=0.05 * np.abs(jet).max() * 1e-3), comp
        # jets are sorted by pT and respect the FatJet threshold
        pt = fj.pt
        assert ak.all(pt[:, :-1] >= pt[:, 1:])
        assert ak.all(pt >= 170.0)
        # anti-kT jets are close to cones of R = 0.8 (soft jets next to a hard one are not)
        dr = np_(ak.flatten(fj.delta_r(pf), axis=None))
        assert np.mean(dr < 0.8 + 1e-3) > 0.99


# ------------------------------------------------------------------------------ physics
def test_qcd_leading_fatjet_above_generation_threshold(small_fileset):
    ev = events_of(small_fileset, "qcd")
    pthat_min = small_fileset["qcd"]["metadata"]["settings"]["pthat_min"]
    # hard-process partons carry pT >= pTHatMin exactly (pT is boost-invariant along z)
    hard = ev.GenPart[abs(ev.GenPart.status) == 23]
    assert ak.all(ak.num(hard) == 2)
    assert ak.min(hard.pt) >= pthat_min * (1 - 1e-6)
    lead = np_(ev.FatJet.pt[:, 0])
    # radiation out of the R = 0.8 cone and smearing lower the jet pT somewhat, never by half
    assert lead.min() > 0.5 * pthat_min
    assert np.median(lead) > pthat_min
    assert np.mean(lead > 0.8 * pthat_min) > 0.95


def _mt_dphi(ev):
    fj = ev.FatJet[ak.num(ev.FatJet) >= 2]
    met = ev.MET[ak.num(ev.FatJet) >= 2]
    jj = fj[:, 0] + fj[:, 1]
    met_pt, met_phi = np_(met.pt), np_(met.phi)
    pt_jj, px_jj, py_jj, m_jj = np_(jj.pt), np_(jj.px), np_(jj.py), np_(jj.mass)
    # transverse mass of dijet + MET (CMS SVJ, arXiv:2112.11125 eq. 1)
    et_jj = np.sqrt(m_jj**2 + pt_jj**2)
    mt2 = (et_jj + met_pt) ** 2 - (px_jj + met_pt * np.cos(met_phi)) ** 2 - (py_jj + met_pt * np.sin(met_phi)) ** 2
    mt = np.sqrt(np.maximum(mt2, 0))
    dphi = np.abs(delta_phi(np_(fj.phi[:, :2]), met_phi[:, None])).min(axis=1)
    return met_pt / mt, dphi, mt


def test_svj_has_met_aligned_with_a_jet(small_fileset):
    rt_q, dphi_q, _ = _mt_dphi(events_of(small_fileset, "qcd"))
    rt_s, dphi_s, mt_s = _mt_dphi(events_of(small_fileset, "svj"))
    assert np.median(rt_s) > 2.0 * np.median(rt_q)
    assert np.median(dphi_s) < 0.5 * np.median(dphi_q)
    # m_T reconstructs the 3 TeV Z' (invisible momentum included), below it by less than 25 %
    assert 2200.0 < np.median(mt_s) < 3300.0


def test_met_is_the_visible_recoil(small_fileset):
    ev = events_of(small_fileset, "svj")
    pf = ev.PFCands
    # MET = -sum of visible PF candidates, independently recomputed from the float32 branches
    mx, my = -np_(ak.sum(pf.pt * np.cos(pf.phi), axis=1)), -np_(ak.sum(pf.pt * np.sin(pf.phi), axis=1))
    assert np.allclose(np.hypot(mx, my), np_(ev.MET.pt), rtol=1e-3, atol=0.05)
    # invisible dark hadrons and neutrinos never appear among PF candidates
    ids = np.abs(np_(ak.flatten(pf.pdgId)))
    assert set(np.unique(ids)) <= {11, 13, 22, 130, 211}
    # the measured MET follows the generated invisible momentum
    assert np.corrcoef(np_(ev.MET.pt), np_(ev.GenMET.pt))[0, 1] > 0.9


def test_dark_jet_truth_flag(small_fileset):
    svj, qcd = events_of(small_fileset, "svj"), events_of(small_fileset, "qcd")
    assert not ak.any(qcd.FatJet.isDark)
    lead = svj.FatJet[ak.num(svj.FatJet) >= 2][:, :2]
    assert ak.mean(lead.isDark) > 0.8


def test_lepton_isolation_matches_a_slow_loop(small_fileset):
    path = next(iter(small_fileset["qcd"]["files"]))
    with uproot.open(path) as f:
        ev = f["Events"].arrays(["PFCands_pt", "PFCands_eta", "PFCands_phi", "Electron_pt",
                                 "Electron_eta", "Electron_phi", "Electron_pfRelIso03_all"], library="np")
    checked = 0
    for i in range(len(ev["Electron_pt"])):
        pts, etas, phis = ev["PFCands_pt"][i], ev["PFCands_eta"][i], ev["PFCands_phi"][i]
        for pt, eta, phi, iso in zip(ev["Electron_pt"][i], ev["Electron_eta"][i],
                                     ev["Electron_phi"][i], ev["Electron_pfRelIso03_all"][i], strict=False):
            # the electron is one of the PF candidates: exclude exactly that one
            me = np.flatnonzero((pts == pt) & (etas == eta) & (phis == phi))
            assert len(me) == 1
            total = 0.0
            for j in range(len(pts)):
                dphi = float(delta_phi(np.float64(phis[j]), np.float64(phi)))
                if j != me[0] and (float(etas[j]) - float(eta)) ** 2 + dphi**2 < 0.09:
                    total += float(pts[j])
            assert iso == pytest.approx(total / float(pt), rel=1e-5, abs=1e-6)
            checked += 1
    assert checked >= 20
