"""The flat link-table path of the constituent features against the grouped-record path.

``jet_features`` computes the η–φ shapes and constituent counts of eager events from the flat
link table (:func:`coffea_ad.features.substructure.table_moments`: one pass over the rows as
the file has them when they come in jet order, else grouped by
:func:`coffea_ad.features.constituents.jet_links` first; no grouped records); the
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
from coffea_ad.features.constituents import jet_links, link_table
from coffea_ad.features.substructure import (
    _table_moments_kernel,
    linked_moments,
    moments,
    table_moments,
)

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


def streamed(events, axis=True):
    """table_moments' one pass over the rows, asserting it was taken (no grouping first)."""
    table = link_table(events)
    n_jets = int(table.jet_offsets[-1])
    ax = [ak.to_numpy(ak.flatten(events.FatJet[f])).astype(np.float64) for f in ("eta", "phi")]
    if not axis:
        ax = [np.full(n_jets, np.nan)] * 2
    out, counts = np.zeros((n_jets, 5)), np.zeros(n_jets, dtype=np.int64)
    weight = (table.column("puppiWeight") if "puppiWeight" in table.cands.fields else None)
    taken = _table_moments_kernel(table.jet_offsets, table.cand_offsets, table.link_offsets,
                                  table.jet_index, table.cand_index, table.column("pt"),
                                  weight, table.column("eta"), table.column("phi"), *ax, 0.8,
                                  out, counts)
    assert taken
    return out, counts, ax


def test_one_pass_over_ordered_rows_equals_grouping_first(pfnano_file, cms_data):
    # jet-ordered rows with out-of-range rows between a jet's own rows and between jets,
    # jets without rows first, in the middle and last, an event without rows, a jet whose
    # only row is out of range, and degenerate candidates (p_T 0, NaN η, inf φ)
    jets = [[{"pt": 100.0, "eta": 0.1, "phi": 0.2}, {"pt": 90.0, "eta": -0.5, "phi": 3.0},
             {"pt": 95.0}],
            [{"pt": 80.0, "eta": 0.3, "phi": -0.4}], [],
            [{"pt": 70.0}, {"pt": 60.0, "eta": 1.0, "phi": -3.1}, {"pt": 50.0}]]
    cands = [[{"pt": float(10 * e + i + 1), "eta": 0.1 * i - 0.2 * e,
               "phi": 3.1 - 0.1 * i if e == 0 else -3.1 + 0.05 * i} for i in range(6)]
             for e in range(4)]
    cands[0][5]["pt"] = 0.0
    cands[3][2]["eta"] = float("nan")
    cands[3][5]["phi"] = float("inf")
    links = [[(1, 0), (9, 1), (1, 3), (1, -2), (1, 5), (2, 2), (2, 4)], [(0, 7)], [],
             [(1, 4), (1, 2), (-1, 0), (1, 5), (1, 1)]]
    edge = synthetic_events(jets, links, cands)
    for events in (edge, load(pfnano_file), load(cms_data / "nano_tt_v15.root")):
        links_ = jet_links(events)
        ax = [ak.to_numpy(ak.flatten(events.FatJet[f])) for f in ("eta", "phi")]
        for axis in (True, False):
            out, counts, _ = streamed(events, axis)
            want = linked_moments(links_, *(ax if axis else (None, None)))
            assert out.tobytes() == want.tobytes()
            np.testing.assert_array_equal(counts, links_.counts)
        got, got_counts = table_moments(link_table(events), *ax)
        assert got.tobytes() == linked_moments(links_, *ax).tobytes()
        np.testing.assert_array_equal(got_counts, links_.counts)
    # a hand count of the edge events' rows in range, per jet
    np.testing.assert_array_equal(jet_links(edge).counts, [0, 3, 2, 0, 0, 4, 0])
    assert_same_bits(jet_features(edge, LINKED), grouped(edge, puppi=True))


def test_rows_out_of_jet_order_are_grouped_first():
    # jet 1's rows before jet 0's: the one pass stops and table_moments groups first
    jets = [[{"pt": 100.0, "eta": 0.1, "phi": 0.2}, {"pt": 90.0, "eta": -0.5, "phi": 3.0}]]
    cands = [[{"pt": float(i + 1), "eta": 0.1 * i, "phi": 0.2 * i} for i in range(4)]]
    events = synthetic_events(jets, [[(1, 0), (1, 1), (0, 2), (0, 3)]], cands)
    table = link_table(events)
    out, counts = np.zeros((2, 5)), np.zeros(2, dtype=np.int64)
    assert not _table_moments_kernel(table.jet_offsets, table.cand_offsets,
                                     table.link_offsets, table.jet_index, table.cand_index,
                                     table.column("pt"), None, table.column("eta"),
                                     table.column("phi"), np.zeros(2), np.zeros(2), 0.8, out,
                                     counts)
    got, got_counts = table_moments(table, np.zeros(2), np.zeros(2))
    assert got.tobytes() == linked_moments(jet_links(events), np.zeros(2),
                                           np.zeros(2)).tobytes()
    assert got_counts.tolist() == [2, 2]
    # p_T^D of jet 0 (candidates 3 and 4 GeV) by hand: sqrt(9 + 16) / 7
    assert got[0, 0] == pytest.approx(5.0 / 7.0, rel=1e-15)
