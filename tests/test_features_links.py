"""The flat link-table path of the constituent features against the grouped-record path.

``jet_features`` computes the η–φ shapes and constituent counts of eager events from
:func:`coffea_ad.features.constituents.jet_links` (flat arrays, no grouped records); the
grouped path (:func:`jet_constituents` then :func:`moments`) stays for dask-awkward's
typetracers and the ECFs. Both must give the same bits, on the real CMS files (PUPPI-weighted
PFNano, NanoAOD v15 without weights) and on hand-built events with unsorted links and
out-of-range rows. The grouped path itself is checked against per-jet loops in
test_features.py.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from test_features import EDGE_CANDS, EDGE_JETS, EDGE_LINKS, synthetic_events

from coffea_ad.features import jet_constituents, jet_features
from coffea_ad.features.constituents import jet_links
from coffea_ad.features.substructure import moments

LINKED = ["ptd", "axis_major", "axis_minor", "girth", "lha", "n_constituents"]


def load(path: Path):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema,
                                           mode="virtual").events()


def grouped(events, *, puppi: bool) -> dict[str, ak.Array]:
    """The same features through grouped constituent records (the typetracer/ECF path)."""
    cons = jet_constituents(events, puppi=puppi, fields=("pt", "eta", "phi"))
    out = moments(cons, ak.zip({f: events.FatJet[f] for f in ("eta", "phi")}), radius=0.8)
    out["n_constituents"] = ak.num(cons, axis=2)
    return {k: ak.values_astype(v, np.float32) for k, v in out.items()}


def assert_same_bits(flat_path, grouped_path, names=LINKED) -> None:
    for name in names:
        assert ak.num(flat_path[name]).tolist() == ak.num(grouped_path[name]).tolist(), name
        got = ak.to_numpy(ak.flatten(flat_path[name]))
        want = ak.to_numpy(ak.flatten(grouped_path[name]))
        assert got.dtype == want.dtype == np.float32, name
        assert got.tobytes() == want.tobytes(), name


@pytest.mark.parametrize("puppi", [True, False])
def test_flat_path_same_bits_as_grouped_on_real_pfnano(pfnano_file, puppi):
    events = load(pfnano_file)
    feats = jet_features(events, LINKED, puppi=puppi)
    assert_same_bits(feats, grouped(events, puppi=puppi))
    # PUPPI weights matter on this file: the two settings must differ, or the weight is lost
    other = jet_features(events, ["ptd"], puppi=not puppi)
    assert not np.array_equal(ak.to_numpy(ak.flatten(other["ptd"])),
                              ak.to_numpy(ak.flatten(feats["ptd"])))


def test_flat_path_same_bits_on_nanoaod_v15_partial_links(cms_data):
    # v15 names (FatJetPFCand, PFCand, pfCandIdx), no weight branch, links for some jets only
    events = load(cms_data / "nano_tt_v15.root")
    feats = jet_features(events, LINKED)
    assert_same_bits(feats, grouped(events, puppi=True))
    counts = ak.to_numpy(ak.flatten(feats["n_constituents"]))
    assert (counts == 0).any()
    assert (counts > 10).any()


def test_jet_links_against_a_loop_over_link_rows(pfnano_file):
    events = load(pfnano_file)
    links = jet_links(events)
    tree = uproot.open(pfnano_file)["Events"]
    arr = tree.arrays(["nFatJet", "FatJetPFCands_jetIdx", "FatJetPFCands_pFCandsIdx",
                       "nPFCands"], library="np")
    cand_start = np.concatenate([[0], np.cumsum(arr["nPFCands"])])
    want = []
    for e, n_jets in enumerate(arr["nFatJet"]):
        for j in range(n_jets):
            rows = np.flatnonzero(arr["FatJetPFCands_jetIdx"][e] == j)
            want.append(cand_start[e] + arr["FatJetPFCands_pFCandsIdx"][e][rows])
    got = [links.cand_index[a:b] for a, b in zip(links.offsets[:-1], links.offsets[1:],
                                                   strict=True)]
    assert len(got) == len(want) == 24
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(np.diff(links.jet_offsets), arr["nFatJet"])


def test_unsorted_links_out_of_range_rows_and_degenerate_jets():
    # interleaved jets (the stable sort path), out-of-range rows, empty jets at an event
    # boundary, zero-p_T / NaN / inf candidates and a jet across φ = ±π
    jets = [[{"pt": 100.0, "eta": 0.1, "phi": 0.2}, {"pt": 90.0, "eta": -0.5, "phi": 3.0}],
            [{"pt": 80.0}], [], [{"pt": 70.0}, {"pt": 60.0, "eta": 1.0, "phi": -3.1}]]
    cands = [[{"pt": float(10 * e + i + 1), "eta": 0.1 * i - 0.2 * e,
               "phi": 3.1 - 0.1 * i if e == 0 else -3.1 + 0.05 * i} for i in range(5)]
             for e in range(4)]
    links = [[(1, 0), (0, 3), (1, 2), (0, 1), (1, 4)], [], [],
             [(1, 4), (7, 0), (1, 9), (1, 1), (-1, 2), (1, 3)]]
    events = synthetic_events(jets, links, cands)
    assert jet_links(events).cand_index.tolist() == [3, 1, 0, 2, 4, 19, 16, 18]
    assert_same_bits(jet_features(events, LINKED), grouped(events, puppi=True))
    edge = synthetic_events(EDGE_JETS, EDGE_LINKS, EDGE_CANDS)
    assert_same_bits(jet_features(edge, LINKED), grouped(edge, puppi=True))
