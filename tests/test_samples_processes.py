"""Physics of the processes beyond qcd/svj: resonance peaks, prong structure, lepton charges.

One small sample per process (150-200 events, seed 7), generated once for the module.
"""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")

from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

from coffea_ad.samples import PROCESSES, generate_fileset

pytestmark = pytest.mark.filterwarnings("ignore:Missing cross-reference:RuntimeWarning")

REQUESTS = {
    "zprime_xy": {"process": "zprime_xy", "events": 150},
    "zprime_xy_3prong": {"process": "zprime_xy_3prong", "events": 150},
    "hpp": {"process": "hpp", "events": 150},
    "zll": {"process": "zjets", "events": 150, "settings": {"z_decay": "leptonic"}},
    "wlnu": {"process": "wjets", "events": 150, "settings": {"w_decay": "leptonic"}},
    "ttbar": {"process": "ttbar", "events": 100},
    "wz": {"process": "wz", "events": 100},
}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    fileset = generate_fileset(REQUESTS, out=tmp_path_factory.mktemp("processes"), seed=7)
    events = {
        name: NanoEventsFactory.from_root(
            entry["files"], schemaclass=PFNanoAODSchema, mode="virtual"
        ).events()
        for name, entry in fileset.items()
    }
    return fileset, events


def np_(array) -> np.ndarray:
    return np.asarray(ak.to_numpy(array))


def test_metadata_flags_and_cross_sections(samples):
    fileset, _ = samples
    for name, req in REQUESTS.items():
        meta = fileset[name]["metadata"]
        assert meta["process"] == req["process"]
        assert meta["is_signal"] == PROCESSES[req["process"]].is_signal
        assert meta["nevents"] == req["events"]
        assert meta["xsec"] > 0
    # LO orders of magnitude at 13.6 TeV (pb): a unit slip (mb vs pb) is off by 10^9
    assert 200 < fileset["ttbar"]["metadata"]["xsec"] < 2000
    assert 5 < fileset["wz"]["metadata"]["xsec"] < 100


def _matched_jets(ev, pdg_id):
    """Leading two FatJets, with the ΔR to the nearest hard-process particle ``pdg_id``."""
    fj = ev.FatJet[:, :2]
    target = ev.GenPart[abs(ev.GenPart.pdgId) == pdg_id]
    pairs = ak.cartesian([fj, target], nested=True)
    dr = ak.min(pairs["0"].delta_r(pairs["1"]), axis=2)
    return fj[ak.fill_none(dr, 9.0) < 0.4]


def test_zprime_xy_mjj_peak_and_groomed_masses(samples):
    fileset, events = samples
    ev = events["zprime_xy"]
    two = ev[ak.num(ev.FatJet) >= 2]
    mjj = np_((two.FatJet[:, 0] + two.FatJet[:, 1]).mass)
    mz = fileset["zprime_xy"]["metadata"]["settings"]["mzprime"]
    # the dijet mass peaks just below m_Z' = 3.5 TeV (FSR out of the cones, smearing)
    hist, edges = np.histogram(mjj, bins=np.arange(1000, 4600, 200))
    peak = edges[np.argmax(hist)] + 100
    assert 0.85 * mz < peak < 1.05 * mz
    assert np.mean((mjj > 0.8 * mz) & (mjj < 1.1 * mz)) > 0.6
    # soft drop recovers the X (500 GeV) and Y (100 GeV) masses in the jets matched to them.
    # X -> q qbar at pT ~ 1.4 TeV opens by ΔR ~ 2m/pT ~ 0.7: often only one prong is in the
    # jet (soft-drop mass ~ 0), so require a clear peak at m_X rather than a median
    msd_x = np_(ak.flatten(_matched_jets(ev, 35).msoftdrop))
    msd_y = np_(ak.flatten(_matched_jets(ev, 36).msoftdrop))
    assert np.mean(np.abs(msd_x - 500) < 50) > 0.3
    assert abs(np.median(msd_x[msd_x > 150]) - 500) < 30
    assert abs(np.median(msd_y) - 100) < 12
    # the truth flag agrees: leading jets of the signal are resonance jets
    assert ak.mean(ev.FatJet.isResonance[:, :2]) > 0.8


def test_three_prong_jets_have_lower_tau32_than_two_prong(samples):
    _, events = samples
    # field access by name: coffea's vector behaviour shadows ``.tau2`` (proper time squared)
    x2 = _matched_jets(events["zprime_xy"], 35)
    x3 = _matched_jets(events["zprime_xy_3prong"], 35)
    tau32_2 = np.median(np_(ak.flatten(x2["tau3"] / x2["tau2"])))
    tau32_3 = np.median(np_(ak.flatten(x3["tau3"] / x3["tau2"])))
    tau21_2 = np.median(np_(ak.flatten(x2["tau2"] / x2["tau1"])))
    tau21_3 = np.median(np_(ak.flatten(x3["tau2"] / x3["tau1"])))
    assert tau32_3 < tau32_2 - 0.05
    assert tau21_2 < tau21_3
    assert tau21_2 < 0.45  # a 2-prong X -> q qbar is well described by two axes


def _iso_leptons(ev):
    lep = ak.concatenate([ev.Electron, ev.Muon], axis=1)
    return lep[(lep.pt > 10) & (lep.pfRelIso03_all < 0.2)]


def test_hpp_gives_same_sign_dileptons_and_zll_opposite_sign(samples):
    _, events = samples
    lep = _iso_leptons(events["hpp"])
    two = lep[ak.num(lep) == 2]
    assert len(two) >= 20
    same_sign = np_(two.charge[:, 0] * two.charge[:, 1]) > 0
    assert same_sign.mean() > 0.9
    # the two W's have the H±± charge: GenPart holds two same-sign W's in every event
    w = events["hpp"].GenPart[abs(events["hpp"].GenPart.pdgId) == 24]
    assert ak.all(ak.num(w) == 2)
    assert ak.all(w.pdgId[:, 0] == w.pdgId[:, 1])

    zlep = _iso_leptons(events["zll"])
    ztwo = zlep[ak.num(zlep) == 2]
    assert len(ztwo) >= 30
    assert np.mean(np_(ztwo.charge[:, 0] * ztwo.charge[:, 1]) < 0) > 0.95
    mll = np_((ztwo[:, 0] + ztwo[:, 1]).mass)
    assert abs(np.median(mll) - 91.2) < 5.0


def test_w_leptonic_transverse_mass_has_jacobian_edge(samples):
    _, events = samples
    ev = events["wlnu"]
    lep = _iso_leptons(ev)
    one = ak.num(lep) == 1
    lep, met = lep[one][:, 0], ev.MET[one]
    mt = np.sqrt(2 * np_(lep.pt) * np_(met.pt) * (1 - np.cos(np_(lep.phi) - np_(met.phi))))
    assert len(mt) >= 40
    # m_T <= m_W up to resolution and width: the edge, and most of the mass below it
    assert 45 < np.median(mt) < 85
    assert np.quantile(mt, 0.9) < 100


def test_sm_hard_processes_in_genpart(samples):
    _, events = samples
    tt = events["ttbar"].GenPart
    assert ak.all(ak.sum(tt.pdgId == 6, axis=1) == 1)
    assert ak.all(ak.sum(tt.pdgId == -6, axis=1) == 1)
    # t -> b W: each top's daughters include a W, found through genPartIdxMother
    w = tt[abs(tt.pdgId) == 24]
    mothers = tt.pdgId[ak.values_astype(w.genPartIdxMother, np.int64)]
    assert ak.all(np.sign(mothers) == np.sign(w.pdgId))
    assert ak.all(abs(mothers) == 6)
    wz = events["wz"].GenPart
    assert ak.all(ak.sum(abs(wz.pdgId) == 24, axis=1) == 1)
    assert ak.all(ak.sum(wz.pdgId == 23, axis=1) == 1)
