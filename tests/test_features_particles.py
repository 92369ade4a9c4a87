"""Particle lists and constituent graphs against per-jet loops on the real pfnano.root jets."""

from __future__ import annotations

import math
import warnings

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_ad.errors import MissingBranchError, UnknownNameError
from coffea_ad.features import constituent_graph, jet_constituents, particle_list

FIELDS = ("pt", "eta", "phi", "mass", "pdgId", "d0", "dz")
PF_CLASS = {211: 1, 130: 2, 22: 3, 11: 4, 13: 5, 1: 6, 2: 7}


@pytest.fixture(scope="module")
def events(pfnano_file):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cross-references absent in the file
        return NanoEventsFactory.from_root({str(pfnano_file): "Events"},
                                           schemaclass=PFNanoAODSchema, mode="virtual").events()


@pytest.fixture(scope="module")
def raw(pfnano_file):
    """Per-jet lists of constituent dicts from the raw branches (loop over link rows), pt and
    mass times the PUPPI weight as the library does by default (float32 products); candidates
    that PUPPI weights to zero carry no p_T and are not valid constituents."""
    arr = uproot.open(pfnano_file)["Events"].arrays(
        ["nFatJet", "FatJet_eta", "FatJet_phi", "FatJetPFCands_jetIdx",
         "FatJetPFCands_pFCandsIdx", "PFCands_puppiWeight"] + [f"PFCands_{f}" for f in FIELDS],
        library="np")
    for f in ("pt", "mass"):
        arr[f"PFCands_{f}"] = arr[f"PFCands_{f}"] * arr["PFCands_puppiWeight"]
    jets = []
    for e in range(len(arr["nFatJet"])):
        for j in range(arr["nFatJet"][e]):
            cands = [{f: float(arr[f"PFCands_{f}"][e][c]) for f in FIELDS}
                     for jet, c in zip(arr["FatJetPFCands_jetIdx"][e],
                                       arr["FatJetPFCands_pFCandsIdx"][e], strict=True)
                     if jet == j and arr["PFCands_pt"][e][c] > 0]
            jets.append({"eta": float(arr["FatJet_eta"][e][j]),
                         "phi": float(arr["FatJet_phi"][e][j]), "cands": cands})
    return jets


def wrap(x):
    return (x + math.pi) % (2 * math.pi) - math.pi


def ref_rows(jet, n):
    cands = sorted(jet["cands"], key=lambda c: -c["pt"])  # sorted() is stable
    total = sum(c["pt"] for c in jet["cands"])
    rows = []
    for c in cands[:n]:
        rows.append([c["eta"] - jet["eta"], wrap(c["phi"] - jet["phi"]), math.log(c["pt"]),
                     c["pt"] / total, PF_CLASS.get(abs(int(c["pdgId"])), 0), c["d0"], c["dz"]])
    return rows


@pytest.mark.parametrize("n", [50, 20])
def test_particle_list_matches_loop(events, raw, n):
    values, mask = particle_list(jet_constituents(events), events.FatJet, n=n)
    assert values.shape == (len(raw), n, 7)
    assert values.dtype == np.float32
    assert mask.shape == (len(raw), n)
    assert mask.dtype == np.bool_
    for i, jet in enumerate(raw):
        rows = ref_rows(jet, n)
        k = len(rows)
        assert mask[i].sum() == k
        assert mask[i, :k].all()
        np.testing.assert_allclose(values[i, :k], np.array(rows), rtol=1e-6, atol=1e-7)
        assert not values[i, k:].any()  # padding is pad_value = 0
    if n == 20:
        assert (mask.sum(axis=1) == n).any()  # truncation happened on the real jets


def test_particle_list_options_and_errors(events):
    cons = jet_constituents(events)
    values, mask = particle_list(cons, events.FatJet, n=5, features=["pt", "delta_r"],
                                 pad_value=-9.0)
    assert values.shape == (24, 5, 2)
    assert np.all(np.diff(values[:, :, 0], axis=1)[mask[:, 1:]] <= 0)  # p_T-ordered
    with pytest.raises(UnknownNameError, match="'d_eta'"):
        particle_list(cons, events.FatJet, features=["d_eta"])
    v15 = cons[["pt", "eta", "phi", "mass", "pdgId"]]  # what NanoAOD v15 PFCand offers
    with pytest.raises(MissingBranchError, match="'d0'"):
        particle_list(v15, events.FatJet)
    # one jet with fewer constituents than n, one with none, one with a NaN candidate
    cons = ak.Array([[[{"pt": 2.0, "eta": 0.1, "phi": 0.0}, {"pt": 3.0, "eta": 0.0,
                                                              "phi": 0.1}],
                      [],
                      [{"pt": 1.0, "eta": float("nan"), "phi": 0.0}]]])
    jets = ak.Array([[{"eta": 0.0, "phi": 0.0}] * 3])
    values, mask = particle_list(cons, jets, n=3, features=["deta", "pt_frac"], pad_value=-1)
    assert mask.tolist() == [[True, True, False], [False] * 3, [False] * 3]
    np.testing.assert_allclose(values[0], [[0.0, 0.6], [0.1, 0.4], [-1, -1]], rtol=1e-6)
    assert np.all(values[1:] == -1)


def ref_graph(jet, n, r_c):
    cands = sorted(jet["cands"], key=lambda c: -c["pt"])[:n]
    k = len(cands)
    dr = np.zeros((n, n))
    for a in range(k):
        for b in range(k):
            dr[a, b] = math.hypot(cands[a]["eta"] - cands[b]["eta"],
                                  wrap(cands[a]["phi"] - cands[b]["phi"]))
    return k, dr


def test_radius_graph_matches_loop(events, raw):
    n, r_c = 30, 0.1
    g = constituent_graph(jet_constituents(events), events.FatJet, n=n, r_c=r_c)
    e = n * (n - 1)
    assert g["edge_index"].shape == (24, 2, e)
    assert g["edge_weight"].shape == (24, e)
    assert g["nodes"].shape == (24, n, 7)
    for i, jet in enumerate(raw):
        k, dr = ref_graph(jet, n, r_c)
        want_adj = np.zeros((n, n))
        want_adj[:k, :k] = dr[:k, :k] < r_c
        np.testing.assert_array_equal(g["adjacency"][i], want_adj)
        edges = {(a, b): dr[a, b] for a in range(k) for b in range(k) if a != b and
                 dr[a, b] < r_c}
        src, dst = g["edge_index"][i]
        on = g["edge_mask"][i]
        got = dict(zip(zip(src[on].tolist(), dst[on].tolist(), strict=True), g["edge_weight"][i][on], strict=True))
        assert got.keys() == edges.keys()
        np.testing.assert_allclose([got[x] for x in edges], list(edges.values()), rtol=1e-5,
                                   atol=1e-6)
        assert not g["edge_weight"][i][~on].any()
    assert g["edge_mask"].sum() > 100


def test_knn_graph_matches_loop(events, raw):
    n, knn = 20, 3
    g = constituent_graph(jet_constituents(events), events.FatJet, n=n, knn=knn,
                          weight="gaussian", r_c=0.2)
    assert g["edge_index"].shape == (24, 2, n * knn)
    for i, jet in enumerate(raw):
        k, dr = ref_graph(jet, n, 0.2)
        src, dst = g["edge_index"][i]
        for a in range(k):
            others = sorted((dr[a, b], b) for b in range(k) if b != a)[:knn]
            sel = slice(a * knn, (a + 1) * knn)
            assert (src[sel] == a).all()
            got_dr = np.sort([dr[a, b] for b in dst[sel][g["edge_mask"][i][sel]]])
            np.testing.assert_allclose(got_dr, [d for d, _ in others], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(
                np.sort(g["edge_weight"][i][sel][g["edge_mask"][i][sel]]),
                np.sort([math.exp(-d * d / (2 * 0.2**2)) for d, _ in others]), rtol=1e-5)
        assert not g["edge_mask"][i][k * knn:].any()  # padded nodes have no edges


def test_graph_argument_errors(events):
    cons = jet_constituents(events)
    with pytest.raises(ValueError, match="knn must be between 1 and n - 1 = 9, got 10"):
        constituent_graph(cons, events.FatJet, n=10, knn=10)
    with pytest.raises(UnknownNameError, match="'weighted'"):
        constituent_graph(cons, events.FatJet, weight="weighted")


def test_chunk_without_jets_gives_empty_fixed_shapes(events):
    empty = events[:0]
    cons = jet_constituents(empty)
    values, mask = particle_list(cons, empty.FatJet, n=5)
    assert values.shape == (0, 5, 7)
    assert mask.shape == (0, 5)
    for knn, n_edges in ((None, 20), (2, 10)):
        g = constituent_graph(cons, empty.FatJet, n=5, knn=knn)
        assert g["edge_index"].shape == (0, 2, n_edges)
        assert g["edge_weight"].shape == (0, n_edges)
        assert g["adjacency"].shape == (0, 5, 5)


def test_numpy_particle_list_equals_the_awkward_form(events):
    # eager input takes the numpy path; the awkward form (kept for dask-awkward) must give
    # the same blocks, including the non-finite jet axis and the p_T sum over all constituents
    from coffea_ad.features._columnar import dispatch
    from coffea_ad.features.particles import _particle_record, _split

    cons = jet_constituents(events)
    jets = events.FatJet
    eta = ak.to_numpy(ak.flatten(jets.eta)).copy()
    eta[1] = np.nan  # one jet with a NaN axis: its Δη/ΔR become the pad value
    jets = ak.with_field(jets, ak.unflatten(eta, ak.num(jets)), "eta")
    feats = ("deta", "dphi", "delta_r", "log_pt", "pt_frac", "log_pt_frac", "pdg_class",
             "mass", "d0")
    for n in (50, 7):
        fast = particle_list(cons, jets, n=n, features=feats, pad_value=-2.0)
        record = dispatch(_particle_record, cons, jets, label="particle-list", n=n,
                          features=feats, pad_value=-2.0)
        slow = _split(record, ("values", "mask"))
        np.testing.assert_array_equal(fast[1], slow[1])
        np.testing.assert_allclose(fast[0], slow[0], rtol=2e-7, atol=0)
        assert (fast[0][1, :, 0] == -2.0).all()
