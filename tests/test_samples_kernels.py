"""Kernels of the generator against hand calculations and a slow reference clustering."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

pytest.importorskip("fastjet")

from coffea_ad.samples.clustering import cluster, gather, substructure
from coffea_ad.samples.detector import DetectorConfig, simulate

EXACT = DetectorConfig(
    track_res_a=0.0, track_res_b=0.0, em_res_stochastic=0.0, em_res_constant=0.0,
    had_res_stochastic=0.0, had_res_constant=0.0, ip_res_a=0.0, ip_res_b=0.0,
)


def particle(pid, charge, pt, eta, phi=0.3, vertex=(0.0, 0.0, 0.0)):
    return (pid, charge, pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), vertex)


def run(parts, config=EXACT, counts=None, seed=0):
    ids = np.array([p[0] for p in parts], dtype=np.int32)
    charge = np.array([p[1] for p in parts], dtype=np.int32)
    px, py, pz = (np.array([p[i] for p in parts], dtype=float) for i in (2, 3, 4))
    vertex = np.array([p[5] for p in parts], dtype=float)
    counts = np.array([len(parts)] if counts is None else counts)
    return simulate(ids, charge, px, py, pz, vertex, counts, config=config, rng=np.random.default_rng(seed))


def test_detector_classes_acceptance_and_thresholds():
    parts = [
        particle(12, 0, 50, 0.0),        # neutrino: invisible
        particle(51, 0, 50, 0.0),        # dark matter: invisible
        particle(4900211, 0, 50, 0.0),   # stable dark meson: invisible
        particle(211, 1, 10, 1.0),       # track
        particle(-211, -1, 10, 3.0),     # beyond the tracker: calorimeter only -> neutral hadron
        particle(11, -1, 20, 0.5),       # electron
        particle(-11, 1, 20, 2.7),       # beyond the tracker: an ECAL cluster -> photon
        particle(-13, 1, 20, 2.45),      # in the tracker but outside the muon system: lost
        particle(13, -1, 20, 1.0),       # muon
        particle(22, 0, 0.3, 0.0),       # photon below 0.5 GeV
        particle(130, 0, 0.8, 0.0),      # neutral hadron below 1 GeV
        particle(130, 0, 5.0, 4.9),      # forward calorimeter
        particle(130, 0, 5.0, 5.1),      # beyond the calorimeters
        particle(211, 1, 0.4, 0.0),      # track below 0.5 GeV (and too soft for the HCAL)
    ]
    pf, counts = run(parts)
    assert counts.tolist() == [6]
    assert pf["pdgId"].tolist() == [211, 130, 11, 22, 13, 130]
    assert pf["charge"].tolist() == [1, 0, -1, 0, -1, 0]
    np.testing.assert_allclose(pf["pt"], [10, 10, 20, 20, 20, 5], rtol=1e-6)
    np.testing.assert_allclose(pf["eta"], [1.0, 3.0, 0.5, 2.7, 1.0, 4.9], rtol=1e-6)
    np.testing.assert_allclose(pf["mass"], [0.13957, 0, 0.000511, 0, 0.10566, 0], rtol=1e-4)
    # clustering momenta carry the mass hypothesis: E^2 = p^2 + m^2
    p2 = pf["px"] ** 2 + pf["py"] ** 2 + pf["pz"] ** 2
    np.testing.assert_allclose(pf["E"] ** 2 - p2, pf["mass"].astype(float) ** 2, atol=1e-6)


def test_impact_parameters_of_a_displaced_track():
    # vertex (1, 2, 3) mm, p = (3, 4, 0) GeV: d0 = (-x py + y px)/pT, dz = z - (x px + y py)/pT * pz/pT
    displaced = (211, 1, 3.0, 4.0, 0.0, (1.0, 2.0, 3.0))
    forward = (211, 1, 3.0, 4.0, 5.0, (1.0, 2.0, 3.0))
    pf, _ = run([displaced, forward])
    assert pf["d0"][0] == pytest.approx((-0.1 * 4 + 0.2 * 3) / 5, abs=1e-7)
    assert pf["dz"][0] == pytest.approx(0.3, abs=1e-7)
    assert pf["dz"][1] == pytest.approx(0.3 - (0.1 * 3 + 0.2 * 4) / 5 * 5 / 5, abs=1e-7)


def test_resolution_matches_the_documented_parametrisation():
    n = 20000
    cfg = DetectorConfig()
    for pid, charge, expected in (
        (22, 0, np.hypot(cfg.em_res_stochastic / np.sqrt(100.0), cfg.em_res_constant)),
        (130, 0, np.hypot(cfg.had_res_stochastic / np.sqrt(100.0), cfg.had_res_constant)),
        (211, 1, np.hypot(cfg.track_res_a, cfg.track_res_b * 100.0)),
    ):
        pf, _ = run([particle(pid, charge, 100.0, 0.0)] * n, config=cfg, seed=3)
        rel = pf["pt"] / 100.0 - 1.0
        assert abs(rel.mean()) < 4 * expected / np.sqrt(n)
        assert rel.std() == pytest.approx(expected, rel=0.03)


def test_event_counts_are_kept_per_event():
    parts = [particle(12, 0, 5, 0), particle(211, 1, 5, 0), particle(14, 0, 5, 0), particle(211, 1, 5, 0)]
    _, counts = run(parts, counts=[1, 0, 3])
    assert counts.tolist() == [0, 0, 2]


# ------------------------------------------------------------------------------ clustering
def slow_antikt(px, py, pz, e, radius):
    """Textbook O(N^3) anti-kT (E-scheme, rapidity-φ distance) for cross-checking FastJet."""
    items = [(np.array([px[i], py[i], pz[i], e[i]]), [i]) for i in range(len(px))]
    jets = []

    def kin(p):
        pt2 = p[0] ** 2 + p[1] ** 2
        y = 0.5 * np.log((p[3] + p[2]) / (p[3] - p[2]))
        return pt2, y, np.arctan2(p[1], p[0])

    while items:
        best = (np.inf, None, None)
        k = [kin(p) for p, _ in items]
        for i in range(len(items)):
            if 1.0 / k[i][0] < best[0]:
                best = (1.0 / k[i][0], i, None)
            for j in range(i + 1, len(items)):
                dphi = (k[i][2] - k[j][2] + np.pi) % (2 * np.pi) - np.pi
                d = min(1.0 / k[i][0], 1.0 / k[j][0]) * ((k[i][1] - k[j][1]) ** 2 + dphi**2) / radius**2
                if d < best[0]:
                    best = (d, i, j)
        _, i, j = best
        if j is None:
            jets.append(items.pop(i))
        else:
            pj, cj = items.pop(j)
            pi, ci = items.pop(i)
            items.append((pi + pj, ci + cj))
    return jets


def test_cluster_matches_a_slow_reference_antikt():
    rng = np.random.default_rng(5)
    # two hard sprays plus soft noise, so that jets merge non-trivially
    eta = np.concatenate([rng.normal(0.0, 0.3, 20), rng.normal(1.0, 0.3, 20), rng.uniform(-2, 2, 20)])
    phi = np.concatenate([rng.normal(0.0, 0.3, 20), rng.normal(2.0, 0.3, 20), rng.uniform(-3, 3, 20)])
    pt = np.concatenate([rng.exponential(20, 40), rng.exponential(2, 20)]) + 0.5
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + 0.14**2)
    cands = ak.zip({"px": [px, px[:0]], "py": [py, py[:0]], "pz": [pz, pz[:0]], "E": [e, e[:0]]})
    jets, index = cluster(cands, radius=0.4, min_pt=5.0)
    assert ak.num(jets).tolist()[1] == 0  # an empty event gives no jets
    ref = [(p, c) for p, c in slow_antikt(px, py, pz, e, 0.4) if np.hypot(p[0], p[1]) > 5.0]
    ref.sort(key=lambda jc: -np.hypot(jc[0][0], jc[0][1]))
    assert len(ref) == len(jets[0]) >= 3
    np.testing.assert_allclose(ak.to_numpy(jets.pt[0]), [np.hypot(p[0], p[1]) for p, _ in ref], rtol=1e-10)
    assert [sorted(c) for c in ak.to_list(index[0])] == [sorted(c) for _, c in ref]
    # gather returns the constituents in jet order, and they sum to the jet
    cons = gather(cands, index)
    np.testing.assert_allclose(ak.to_numpy(ak.sum(cons.px, axis=2)[0]), ak.to_numpy(jets.px[0]), rtol=1e-10)


def two_prong(pt1, pt2, dr, *, third=None):
    parts = [(pt1, 0.0, 0.0), (pt2, dr, 0.0)] + ([third] if third else [])
    px = [p * np.cos(phi) for p, _, phi in parts]
    py = [p * np.sin(phi) for p, _, phi in parts]
    pz = [p * np.sinh(eta) for p, eta, _ in parts]
    e = [np.sqrt(a**2 + b**2 + c**2) for a, b, c in zip(px, py, pz, strict=False)]
    return {"px": px, "py": py, "pz": pz, "E": e}


def test_soft_drop_and_nsubjettiness_on_hand_made_jets():
    soft = two_prong(100.0, 5.0, 0.4)   # z = 5/105 < 0.1: the soft prong is groomed away
    hard = two_prong(50.0, 50.0, 0.4)   # z = 0.5: kept
    tri = two_prong(40.0, 40.0, 0.4, third=(40.0, 0.2, 0.35))
    cons = ak.Array([[ak.zip(soft), ak.zip(hard)], [ak.zip(tri)]])
    out = substructure(cons, r0=0.8)
    m_hard = np.sqrt(2 * 50 * 50 * (np.cosh(0.4) - 1.0))
    assert out["msoftdrop"][0] == pytest.approx(0.0, abs=1e-3)
    assert out["msoftdrop"][1] == pytest.approx(m_hard, rel=1e-5)
    # normalised τ_N = Σ pT_i min_k ΔR_ik / (Σ pT_i R0): two equal prongs d apart give
    # τ1 = d / (2 R0) for any axis on the segment between them, and τ2 = 0
    assert out["tau1"][1] == pytest.approx(0.4 / (2 * 0.8), rel=1e-3)
    assert out["tau2"][1] == pytest.approx(0.0, abs=1e-6)
    # three prongs: τ3 = 0 < τ2 < τ1
    assert out["tau3"][2] == pytest.approx(0.0, abs=1e-6)
    assert 0 < out["tau2"][2] < out["tau1"][2]
    assert all(v.dtype == np.float32 and len(v) == 3 for v in out.values())


def test_substructure_of_no_jets_is_empty():
    flat = ak.zip({k: np.zeros(0) for k in ("px", "py", "pz", "E")})
    cons = ak.unflatten(ak.unflatten(flat, np.zeros(0, dtype=np.int64)), np.array([0, 0]))
    assert ak.num(cons).tolist() == [0, 0]
    out = substructure(cons)
    assert sorted(out) == ["msoftdrop", "tau1", "tau2", "tau3", "tau4"]
    assert all(len(v) == 0 for v in out.values())


def test_numba_soft_drop_and_nsubjettiness_equal_fastjet_contrib(small_fileset):
    """Our kernels against fastjet-contrib SoftDrop and Nsubjettiness (python fastjet binding)
    on the constituents of generated jets, rebuilt from the written PFNano links."""
    import fastjet
    import uproot

    from coffea_ad.samples.clustering import nsubjettiness, softdrop_mass

    path = next(iter(small_fileset["qcd"]["files"]))
    with uproot.open(path) as f:
        ev = f["Events"].arrays(["PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass",
                                 "FatJetPFCands_pFCandsIdx", "nFatJetPFCands", "FatJet_nConstituents"],
                                entry_stop=120)
    pt, eta, phi, m = (ak.values_astype(ev[f"PFCands_{c}"], np.float64) for c in ("pt", "eta", "phi", "mass"))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    cands = ak.zip({"px": px, "py": py, "pz": pz, "E": np.sqrt(px**2 + py**2 + pz**2 + m**2)})
    # rebuild events * jets * constituents from the written PFNano links
    idx = ak.unflatten(ev.FatJetPFCands_pFCandsIdx, ak.flatten(ev.FatJet_nConstituents), axis=1)
    cons = gather(cands, ak.values_astype(idx, np.int64))
    ours = softdrop_mass(cons)
    per_jet = ak.flatten(cons, axis=1)
    seq = fastjet.ClusterSequence(
        ak.zip({"px": per_jet.px, "py": per_jet.py, "pz": per_jet.pz, "E": per_jet.E}, with_name="Momentum4D"),
        fastjet.JetDefinition(fastjet.cambridge_algorithm, 1000.0),
    )
    ref = np.asarray(seq.exclusive_jets_softdrop_grooming(njets=1, beta=0.0, symmetry_cut=0.1, R0=0.8).msoftdrop)
    assert len(ours) == len(ref) > 150
    # atol: a groomed jet of one massless candidate has m² ~ -1e-10 from rounding, which FastJet
    # returns as m = -sqrt(|m²|) (~ -1e-5 GeV) and we clip to 0
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-4)
    # grooming removes constituents: m(subset) <= m(jet) for physical four-vectors
    tot = {c: np.asarray(ak.flatten(ak.sum(cons[c], axis=2))) for c in ("px", "py", "pz", "E")}
    mass = np.sqrt(np.maximum(tot["E"] ** 2 - tot["px"] ** 2 - tot["py"] ** 2 - tot["pz"] ** 2, 0))
    assert np.all(ours <= mass * (1 + 1e-9))
    assert np.mean(ours < 0.5 * mass) > 0.1

    taus = nsubjettiness(cons, nmax=4, r0=0.8)
    ref_taus = seq.njettiness(measure_definition="NormalizedMeasure", axes_definition="OnePass_KT_Axes",
                              njets=[1, 2, 3, 4], beta=1.0, R0=0.8)
    ref_taus = np.asarray(ak.to_numpy(ref_taus), dtype=np.float64).reshape(-1, 4)
    np.testing.assert_allclose(taus, ref_taus, rtol=1e-9, atol=1e-12)
    # the minimisation matters: plain exclusive-kT axes give larger τ2 on most jets
    kt_only = seq.njettiness(measure_definition="NormalizedMeasure", axes_definition="KT_Axes",
                             njets=[2], beta=1.0, R0=0.8)
    assert np.mean(np.asarray(ak.to_numpy(kt_only)).ravel() > taus[:, 1] + 1e-9) > 0.5


def test_substructure_backends_agree(small_fileset):
    import uproot

    path = next(iter(small_fileset["svj"]["files"]))
    with uproot.open(path) as f:
        ev = f["Events"].arrays(["PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass",
                                 "FatJetPFCands_pFCandsIdx", "FatJet_nConstituents",
                                 "FatJet_msoftdrop", "FatJet_tau2"], entry_stop=60)
    pt, eta, phi, m = (ak.values_astype(ev[f"PFCands_{c}"], np.float64) for c in ("pt", "eta", "phi", "mass"))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    cands = ak.zip({"px": px, "py": py, "pz": pz, "E": np.sqrt(px**2 + py**2 + pz**2 + m**2)})
    idx = ak.unflatten(ev.FatJetPFCands_pFCandsIdx, ak.flatten(ev.FatJet_nConstituents), axis=1)
    cons = gather(cands, ak.values_astype(idx, np.int64))
    a = substructure(cons, backend="numba")
    b = substructure(cons, backend="fastjet")
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    # the written branches were computed from float64 constituents before float32 storage
    np.testing.assert_allclose(a["msoftdrop"], ak.to_numpy(ak.flatten(ev.FatJet_msoftdrop)), rtol=2e-3, atol=0.5)
    with pytest.raises(ValueError, match="backend"):
        substructure(cons, backend="root")


def test_vertex_read_from_buffers_equals_fill_none():
    """The production vertices read straight from Pythia's option buffers equal awkward's
    fill_none path, also after two batches are concatenated (the top-up path of EventMaker)."""
    pythia8mc = pytest.importorskip("pythia8mc")
    from coffea_ad.samples.events import _vertex
    from coffea_ad.samples.processes import pythia_commands, resolve_settings

    pythia = pythia8mc.Pythia("", False)
    for cmd in pythia_commands("ttbar", resolve_settings("ttbar"), seed=3):
        pythia.readString(cmd)
    assert pythia.init()
    prt = ak.concatenate([pythia.nextBatch(4).prt, pythia.nextBatch(3).prt])
    final = np.asarray(ak.flatten(prt.status > 0))
    ref = np.stack(
        [np.asarray(ak.flatten(ak.fill_none(prt.vProd[c], 0.0)))[final] for c in ("px", "py", "pz")], axis=1
    )
    got = _vertex(prt, final)
    assert got.shape == (final.sum(), 3)
    np.testing.assert_array_equal(got, ref)
    # tt̄ has displaced decays (B hadrons): some vertices are away from the origin, some at it
    assert 0.05 < np.mean(np.any(got != 0, axis=1)) < 0.95


def test_event_maker_stage_timings_add_up_to_the_cpu_time_of_make():
    """``EventMaker.timings`` splits the CPU time of ``make`` into stages that sum to it, and
    each stage accumulates over chunks (the benchmark prints them per event)."""
    pytest.importorskip("pythia8mc")
    import time

    from coffea_ad.samples.events import EventMaker
    from coffea_ad.samples.processes import resolve_settings

    maker = EventMaker("qcd", resolve_settings("qcd", {"pthat_min": 300.0}), seed=4)
    maker.make(5, first_event=1)  # kernels loaded, banner printed: not part of the check
    maker.timings.clear()
    start = time.process_time()
    for i in range(3):
        maker.make(20, first_event=1 + 20 * i)
    spent = time.process_time() - start
    assert set(maker.timings) == {"pythia", "detector", "clustering", "substructure", "other"}
    assert all(v > 0 for v in maker.timings.values())
    assert sum(maker.timings.values()) == pytest.approx(spent, rel=0.02, abs=2e-3)
    assert maker.timings["pythia"] > maker.timings["detector"]  # 60 hard-QCD events vs numpy
