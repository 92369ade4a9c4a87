"""The same features from dask-awkward NanoEvents as from virtual ones, reading only what they need.

Computed with the synchronous scheduler (no cluster), with dask-awkward's optimizations as
configured (column projection is the one whose result these tests check).
"""

from __future__ import annotations

import warnings

import awkward as ak
import numpy as np
import pytest

from coffea_ad.features import (
    JET_FEATURES,
    constituent_graph,
    event_variables,
    jet_constituents,
    jet_features,
    particle_list,
    transverse_mass,
)

dask = pytest.importorskip("dask")
dak = pytest.importorskip("dask_awkward")

DEMO_FEATURES = ["eta", "phi", "mass", "ptd", "axis_major", "axis_minor"]
LINKS = {"nFatJet", "nFatJetPFCands", "FatJetPFCands_jetIdx", "FatJetPFCands_pFCandsIdx",
         "nPFCands"}


def load(path, mode):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cross-references absent in the file
        return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema,
                                           mode=mode).events()


@pytest.fixture(scope="module")
def both(pfnano_file):
    return load(pfnano_file, "virtual"), load(pfnano_file, "dask")


def compute(*collections):
    """One dask.compute for all (one read of the file); a single result for one collection."""
    out = dask.compute(*collections, scheduler="sync")
    return out[0] if len(collections) == 1 else out


def columns(collection) -> set[str]:
    (cols,) = dak.necessary_columns(collection).values()
    return set(cols)


def test_all_jet_features_identical_in_dask_and_virtual_modes(both):
    virtual, lazy = both
    names = list(JET_FEATURES)
    out = jet_features(lazy, names)
    assert isinstance(out, dak.Array)
    got, want = compute(out), jet_features(virtual, names)
    assert got.fields == names
    for name in names:
        np.testing.assert_array_equal(ak.to_numpy(ak.flatten(got[name])),
                                      ak.to_numpy(ak.flatten(want[name])), err_msg=name)


def test_event_variables_and_mt_identical_in_dask_mode(both):
    virtual, lazy = both
    got, want = compute(event_variables(lazy)), event_variables(virtual)
    for name in want.fields:
        np.testing.assert_array_equal(ak.to_numpy(got[name]), ak.to_numpy(want[name]), name)
    lead_l, lead_v = lazy.FatJet[:, :2], virtual.FatJet[:, :2]
    np.testing.assert_array_equal(
        ak.to_numpy(compute(transverse_mass(lead_l[:, 0], lead_l[:, 1], lazy.MET))),
        ak.to_numpy(transverse_mass(lead_v[:, 0], lead_v[:, 1], virtual.MET)))


def test_dask_reads_only_the_needed_branches(both):
    _, lazy = both
    # the PUPPI weight scales each constituent's pt (and mass): read with pt
    cands = {"PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_puppiWeight"}
    assert columns(jet_features(lazy, DEMO_FEATURES)) == LINKS | cands | {
        "FatJet_eta", "FatJet_phi", "FatJet_mass"}
    # ECFs use the rapidity, hence the candidate mass; nothing else of the ~20 PFCands branches
    assert columns(jet_features(lazy, ["c2_b1", "d2_b1"])) == LINKS | cands | {"PFCands_mass"}
    assert columns(jet_features(lazy, ["tau21"])) == {"nFatJet", "FatJet_tau1", "FatJet_tau2"}
    # all fields by default: the PUPPI scaling of pt and mass reads both with the weight
    assert columns(jet_constituents(lazy)["pt"]) == LINKS | {"PFCands_pt", "PFCands_mass",
                                                             "PFCands_puppiWeight"}
    assert columns(jet_constituents(lazy, fields=["pt"])["pt"]) == LINKS | {
        "PFCands_pt", "PFCands_puppiWeight"}
    assert columns(jet_constituents(lazy, puppi=False)["pt"]) == LINKS | {"PFCands_pt"}
    assert columns(event_variables(lazy)) == {"nFatJet", "FatJet_pt", "FatJet_eta",
                                              "FatJet_phi", "FatJet_mass", "MET_pt", "MET_phi"}


def test_particle_list_and_graph_identical_in_dask_mode(both):
    virtual, lazy = both
    values, mask = particle_list(jet_constituents(lazy), lazy.FatJet, n=30)
    want_values, want_mask = particle_list(jet_constituents(virtual), virtual.FatJet, n=30)
    graph = constituent_graph(jet_constituents(lazy), lazy.FatJet, n=20, knn=3)
    want = constituent_graph(jet_constituents(virtual), virtual.FatJet, n=20, knn=3)
    names = ("adjacency", "edge_index", "edge_weight", "edge_mask")
    got = compute(values, mask, *(graph[name] for name in names))
    np.testing.assert_array_equal(ak.to_numpy(got[0]), want_values)
    np.testing.assert_array_equal(ak.to_numpy(got[1]), want_mask)
    for name, array in zip(names, got[2:], strict=True):
        np.testing.assert_array_equal(ak.to_numpy(array), want[name], name)
