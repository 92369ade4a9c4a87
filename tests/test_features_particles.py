"""Particle lists and constituent graphs against per-jet loops on the real pfnano.root jets."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_ad.errors import InvalidArgumentError, MissingBranchError, UnknownNameError
from coffea_ad.features import (
    PARTICLE_FEATURES,
    constituent_graph,
    jet_constituents,
    particle_blocks_from_events,
    particle_list,
    particle_list_from_events,
)
from coffea_ad.features.constituents import link_table
from coffea_ad.features.particles import _jet_rows

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


# ------------------------------------------------------------- flat link-table path (eager)
# particle_list_from_events builds the blocks of eager events from the link table
# (jet_links) with one numba pass; the grouped path (jet_constituents -> particle_list) is
# what dask-awkward takes. They must give the same bits.
ALL_FEATURES = tuple(PARTICLE_FEATURES)
GAE_FEATURES = ("deta", "dphi", "mass", "log_pt", "pdg_class", "d0", "dz")
SUMS = ("pt_frac", "log_pt_frac")  # a sum over the jet: the awkward form may add differently


def load(path):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema,
                                           mode="virtual").events()


def grouped_blocks(events, *, puppi=True, **options):
    return particle_list(jet_constituents(events, puppi=puppi), events.FatJet, **options)


def awkward_blocks(events, *, puppi=True, n, features, pad_value):
    """The pure-awkward form (dask-awkward's), run eagerly."""
    from coffea_ad.features.particles import _particle_record, _split

    record = _particle_record(jet_constituents(events, puppi=puppi), events.FatJet, n=n,
                              features=tuple(features), pad_value=pad_value)
    return _split(record, ("values", "mask"))


def assert_same_blocks(got, want, features, *, sums_exact=True):
    values, mask = got
    assert values.dtype == want[0].dtype == np.float32
    assert mask.dtype == want[1].dtype == np.bool_
    assert values.shape == want[0].shape
    np.testing.assert_array_equal(mask, want[1])
    for j, name in enumerate(features):
        if name in SUMS and not sums_exact:
            np.testing.assert_allclose(values[..., j], want[0][..., j], rtol=2e-7, atol=0)
        else:
            assert values[..., j].tobytes() == want[0][..., j].tobytes(), name


def available(events, features):
    cands = events.PFCands if "PFCands" in events.fields else events.PFCand
    fields = set(cands.fields)
    raw = {"pt", "eta", "phi", "mass", "pdgId", "charge", "d0", "dz"}
    return tuple(f for f in features if (f not in raw or f in fields)
                 and (f != "pdg_class" or "pdgId" in fields))


@pytest.mark.parametrize("puppi", [True, False])
def test_flat_particle_list_same_bits_on_real_pfnano(pfnano_file, puppi):
    events = load(pfnano_file)
    assert "puppiWeight" in events.PFCands.fields  # the weighting is exercised
    for n, pad, features in ((50, 0.0, GAE_FEATURES), (20, -3.0, ALL_FEATURES),
                             (1, 7.0, ALL_FEATURES)):
        options = {"n": n, "features": features, "pad_value": pad}
        got = particle_list_from_events(events, puppi=puppi, **options)
        assert_same_blocks(got, grouped_blocks(events, puppi=puppi, **options), features)
        assert_same_blocks(got, awkward_blocks(events, puppi=puppi, **options), features,
                           sums_exact=False)
    assert (got[1].sum(axis=1) == 1).sum() == 24  # n = 1: every real jet has constituents
    # the weights matter on this file: the two settings must differ, or a weight is lost
    other = particle_list_from_events(events, puppi=not puppi, features=("mass",))
    assert not np.array_equal(other[0], particle_list_from_events(
        events, puppi=puppi, features=("mass",))[0])


def test_flat_particle_list_same_bits_on_nanoaod_v15(cms_data):
    # v15 names (FatJetPFCand, PFCand, pfCandIdx), no weights, no d0/dz, partial links
    events = load(cms_data / "nano_tt_v15.root")
    features = available(events, ALL_FEATURES)
    assert "d0" not in features
    assert "pdg_class" in features
    for n in (50, 5):
        got = particle_list_from_events(events, n=n, features=features, pad_value=-1.0)
        assert_same_blocks(got, grouped_blocks(events, n=n, features=features, pad_value=-1.0),
                           features)
        assert (got[1].sum(axis=1) == 0).any()  # jets without links
    with pytest.raises(MissingBranchError, match="'d0'"):
        particle_list_from_events(events)  # the grouped path's error: v15 has no d0


def test_flat_particle_list_same_bits_on_generated_files(small_fileset):
    for dataset, entry in small_fileset.items():
        for path in entry["files"]:
            events = load(path)
            for features in (GAE_FEATURES, available(events, ALL_FEATURES)):
                got = particle_list_from_events(events, features=features)
                assert_same_blocks(got, grouped_blocks(events, features=features), features)
            assert got[1].all(axis=1).any(), dataset  # jets with more than 50 constituents


def test_gae_scores_events_through_the_flat_path(pfnano_file):
    """The shipped graph AE scored by score_events (flat path) equals the model run on the
    grouped path's blocks."""
    from coffea_ad.inference import OnnxScorer

    scorer = OnnxScorer(Path(__file__).resolve().parents[1] / "models" / "svj_gae.onnx",
                        intra_op_threads=1)
    spec = scorer.contract.inputs[0]
    events = load(pfnano_file)
    values, mask = grouped_blocks(events, n=spec.pad_length, features=spec.features,
                                  pad_value=spec.pad_value)
    want = scorer({"particles": values, "mask": mask.astype(np.float32)})
    got = scorer.score_events(events)
    assert ak.num(got).to_list() == ak.num(events.FatJet).to_list()
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(got)), want)


@pytest.mark.parametrize("name", ["pfnano", "v15"])
def test_flat_particle_list_of_chosen_jets_equals_those_rows(pfnano_file, cms_data, name):
    """jet_index (unsorted, repeated, empty) gives the rows of the grouped path's blocks."""
    events = load(pfnano_file if name == "pfnano" else cms_data / "nano_tt_v15.root")
    features = available(events, ALL_FEATURES)
    values, mask = grouped_blocks(events, n=30, features=features, pad_value=-2.0)
    rng = np.random.default_rng(3)
    for index in (rng.integers(0, len(values), 40), np.arange(len(values))[::-3],
                  np.zeros(0, dtype=np.int64)):
        got = particle_list_from_events(events, n=30, features=features, pad_value=-2.0,
                                        jet_index=index)
        np.testing.assert_array_equal(got[0], values[index])
        np.testing.assert_array_equal(got[1], mask[index])
    for bad in (np.array([len(values)]), np.array([-1]), np.array([0.5])):
        with pytest.raises(InvalidArgumentError, match="jet_index"):
            particle_list_from_events(events, features=features, jet_index=bad)


@pytest.mark.parametrize("model", ["svj_gae", "svj_dense_ae"])
def test_scorer_scores_chosen_jets_as_every_jet(pfnano_file, model):
    """score_jets / outputs_for_jets give the rows of score_events for the chosen jets (a
    constituent-list model builds only those jets' inputs; a dense one takes their rows)."""
    from coffea_ad.inference import OnnxScorer
    from coffea_ad.inference.scorer import NONFINITE_MASK

    path = Path(__file__).resolve().parents[1] / "models" / f"{model}.onnx"
    events = load(pfnano_file)
    every = ak.to_numpy(ak.flatten(OnnxScorer(path).score_events(events)))
    index = np.array([5, 0, 5, len(every) - 1, 2])
    # a dense model's rows go through ONNX Runtime's GEMM in a batch of another size, whose
    # blocking may round a row differently in the last bit (seen: 1 ulp); the graph AE's
    # per-jet products do not depend on the batch
    rtol = 0.0 if model == "svj_gae" else 2e-7
    np.testing.assert_allclose(OnnxScorer(path).score_jets(events, index), every[index],
                               rtol=rtol, atol=0)
    assert OnnxScorer(path).score_jets(events, []).shape == (0,)
    outs = OnnxScorer(path, nonfinite="flag").outputs_for_jets(events, index)
    np.testing.assert_allclose(outs[OnnxScorer(path).contract.score], every[index], rtol=rtol,
                               atol=0)
    assert outs[NONFINITE_MASK].tolist() == [False] * len(index)


def test_particle_blocks_fill_any_range_as_the_grouped_blocks(pfnano_file):
    """fill(start, stop) writes rows start:stop of the grouped path's blocks, bit for bit,
    for ranges cut anywhere (empty, one jet, the last jet), into a bool mask or the float32
    mask a graph AE takes; bad ranges and buffers are refused."""
    events = load(pfnano_file)
    features = available(events, ALL_FEATURES)
    want = grouped_blocks(events, n=20, features=features, pad_value=-3.0)
    blocks = particle_blocks_from_events(events, n=20, features=features, pad_value=-3.0)
    n_jets = len(want[0])
    assert (blocks.n_jets, blocks.n, blocks.n_features) == (n_jets, 20, len(features))
    assert_same_blocks(blocks.arrays(), want, features)
    edges = [0, 0, 1, 7, n_jets // 2, n_jets - 1, n_jets]
    for start, stop in zip(edges, edges[1:], strict=False):
        for mask_dtype in (np.bool_, np.float32):
            values = np.full((stop - start, 20, len(features)), np.nan, dtype=np.float32)
            mask = np.full((stop - start, 20), 7, dtype=mask_dtype)  # overwritten everywhere
            blocks.fill(start, stop, values, mask)
            assert values.tobytes() == want[0][start:stop].tobytes()
            assert mask.tobytes() == want[1][start:stop].astype(mask_dtype).tobytes()
    values = np.zeros((2, 20, len(features)), dtype=np.float32)  # no NaN bits to cast
    mask = np.zeros((2, 20), dtype=np.bool_)
    for start, stop in ((n_jets - 1, n_jets + 1), (3, 1), (-1, 1)):
        with pytest.raises(InvalidArgumentError, match="not a range"):
            blocks.fill(start, stop, values, mask)
    for bad_values, bad_mask in ((values[:1], mask), (values.astype(np.float64), mask),
                                 (values, mask[:, :10]), (values[:, ::2], mask[:, ::2])):
        with pytest.raises(InvalidArgumentError, match="C-contiguous"):
            blocks.fill(0, len(bad_values), bad_values, bad_mask)


def gae_copy(tmp_path, **particles):
    """The shipped svj_gae model with its contract's particle input changed."""
    import json
    import shutil

    models = Path(__file__).resolve().parents[1] / "models"
    shutil.copy(models / "svj_gae.onnx", tmp_path / "svj_gae.onnx")
    contract = json.loads((models / "svj_gae.json").read_text())
    contract["inputs"][0].update(particles)
    (tmp_path / "svj_gae.json").write_text(json.dumps(contract))
    return tmp_path / "svj_gae.onnx"


@pytest.mark.parametrize("batch_size", [None, 5])
@pytest.mark.parametrize("scaled", [False, True])
def test_scorer_fills_particle_batches_as_the_whole_arrays(pfnano_file, tmp_path, batch_size,
                                                           scaled):
    """score_events / outputs_for_jets write each batch's blocks into one reused buffer;
    every output equals that of the same scorer on the chunk's whole arrays, bit for bit,
    with one batch or many (and a partial last one), with and without host-side scaling."""
    from coffea_ad.inference import OnnxScorer

    path = (gae_copy(tmp_path, scaling="external", centre=[0.01, -0.02, 0.1, 1.0, 1.5, 0.0,
                                                           0.0],
                     scale=[0.2, 0.2, 0.5, 1.0, 2.0, 0.1, 0.1]) if scaled
            else Path(__file__).resolve().parents[1] / "models" / "svj_gae.onnx")
    scorer = OnnxScorer(path, batch_size=batch_size, intra_op_threads=1)
    spec = scorer.contract.inputs[0]
    events = load(pfnano_file)
    values, mask = particle_list_from_events(events, n=spec.pad_length, features=spec.features)
    want = scorer.outputs({"particles": values, "mask": mask.astype(np.float32)})
    got = scorer.outputs_from_events(events)
    assert sorted(got) == sorted(want)
    for name, out in want.items():
        assert ak.to_numpy(ak.flatten(got[name])).tobytes() == out.tobytes(), name
    # the arrays of the chosen jets: a batch of other rows may round the model's products
    # differently in the last bit
    index = np.array([3, 0, len(values) - 1, 3])
    chosen = scorer.outputs_for_jets(events, index)
    want = scorer.outputs({"particles": values[index], "mask": mask[index].astype(np.float32)})
    for name, out in want.items():
        assert chosen[name].tobytes() == out.tobytes(), name
    n_batches = -(-len(values) // scorer.batch_size)
    assert scorer.stats.batches == 2 * n_batches + 2


def test_scorer_flags_or_refuses_a_particle_batch_with_nonfinite_inputs():
    """A float64 d0 beyond float32's range is inf in the block: under "flag" that jet gets
    -1 and the mask, the others their scores, as the whole-array path gives them; under
    "raise" the error counts the whole chunk."""
    from coffea_ad.errors import NonFiniteInputError
    from coffea_ad.inference import OnnxScorer
    from coffea_ad.inference.scorer import FLAG_VALUE, NONFINITE_MASK

    path = Path(__file__).resolve().parents[1] / "models" / "svj_gae.onnx"
    jets = [[{"pt": 300.0, "eta": 0.1, "phi": 0.2}, {"pt": 200.0, "eta": -1.0, "phi": 2.0}],
            [{"pt": 250.0, "eta": 0.5, "phi": -1.0}]]
    cands = [[cand(10.0), cand(5.0, eta=0.12, d0=1e300), cand(3.0, eta=-1.0, phi=2.01),
              cand(2.0, eta=-1.02, phi=2.0, pdgId=22)],
             [cand(7.0, eta=0.5, phi=-1.0), cand(1.0, eta=0.55, phi=-1.0, pdgId=130)]]
    links = [[(0, 0), (0, 1), (1, 2), (1, 3)], [(0, 0), (0, 1)]]
    events = build_events(jets, links, cands)
    flagging = OnnxScorer(path, nonfinite="flag", batch_size=2, intra_op_threads=1)
    spec = flagging.contract.inputs[0]
    values, mask = particle_list_from_events(events, n=spec.pad_length, features=spec.features)
    assert np.isinf(values[0]).any() and np.isfinite(values[1:]).all()
    want = flagging.outputs({"particles": values, "mask": mask.astype(np.float32)})
    assert want[NONFINITE_MASK].tolist() == [True, False, False]
    got = flagging.outputs_from_events(events)
    assert sorted(got) == sorted(want)
    for name, out in want.items():
        assert ak.to_numpy(ak.flatten(got[name])).tobytes() == out.tobytes(), name
    assert ak.flatten(got[flagging.contract.score]).to_list()[0] == FLAG_VALUE
    assert flagging.stats.nonfinite_rows == 2
    with pytest.raises(NonFiniteInputError, match=r"1 of 3 rows .*'d0': 1\)"):
        OnnxScorer(path, batch_size=2).score_events(events)


def build_events(jets, links, cands):
    """Events from per-event lists: jet dicts, (jetIdx, candIdx) link rows, candidate dicts."""
    def table(rows, fields):
        return ak.Array([[{f: row[f] for f in fields} for row in ev] for ev in rows])

    cand_fields = [f for f in ("pt", "eta", "phi", "mass", "pdgId", "charge", "d0", "dz",
                               "puppiWeight") if any(f in c for ev in cands for c in ev)]
    return ak.zip({
        "FatJet": table(jets, ("pt", "eta", "phi")),
        "FatJetPFCands": ak.Array([[{"jetIdx": j, "pFCandsIdx": c} for j, c in ev]
                                   for ev in links]),
        "PFCands": table(cands, cand_fields),
    }, depth_limit=1)


def cand(pt, eta=0.1, phi=0.2, mass=0.1, pdgId=211, charge=1, d0=0.0, dz=0.0, w=1.0):
    return {"pt": pt, "eta": eta, "phi": phi, "mass": mass, "pdgId": pdgId, "charge": charge,
            "d0": d0, "dz": dz, "puppiWeight": w}


NAN, INF = float("nan"), float("inf")


def test_flat_particle_list_edge_cases_by_hand():
    """Known blocks (d0 labels the candidates): zero-constituent jets, ties in p_T, more than
    n constituents, unsorted and out-of-range links, NaN/inf inputs, zero PUPPI weights."""
    jets = [[{"pt": 1.0, "eta": 0.0, "phi": 3.0},    # 0: ties, unsorted, > n, across φ = π
             {"pt": 1.0, "eta": 0.5, "phi": 0.0},    # 1: no links at all
             {"pt": 1.0, "eta": NAN, "phi": 0.0}],   # 2: NaN axis
            [],                                      # an event without jets
            [{"pt": 1.0, "eta": 0.0, "phi": 0.0}]]   # 3: only invalid constituents
    cands = [[cand(2.0, phi=-3.0, d0=0.0), cand(5.0, d0=1.0), cand(2.0, d0=2.0),
              cand(3.0, d0=3.0, mass=NAN), cand(2.0, d0=4.0, pdgId=-13),
              cand(1.0, eta=NAN, d0=5.0), cand(4.0, d0=6.0, w=0.0),  # invalid: NaN η, w = 0
              cand(2.0, d0=7.0, dz=INF), cand(6.0, d0=8.0, w=0.5)],
             [cand(1.0)],
             [cand(0.0, d0=1.0), cand(-1.0, d0=2.0), cand(INF, d0=3.0), cand(NAN, d0=4.0),
              cand(1.0, phi=INF, d0=5.0)]]
    links = [[(0, 2), (2, 1), (0, 0), (0, 1), (5, 3), (0, 4), (0, 5), (0, -1), (0, 6),
              (0, 7), (-1, 4), (0, 3), (2, 8), (0, 9)],
             [(0, 0)],   # jetIdx 0 in an event without jets: ignored
             [(0, k) for k in range(5)]]
    events = build_events(jets, links, cands)
    n = 4
    features = ("d0", "pt", "deta", "dphi", "mass", "pdg_class", "dz", "pt_frac")
    for puppi in (True, False):
        got = particle_list_from_events(events, n=n, features=features, pad_value=-9.0,
                                        puppi=puppi)
        want = grouped_blocks(events, puppi=puppi, n=n, features=features, pad_value=-9.0)
        assert_same_blocks(got, want, features)
        assert_same_blocks(got, awkward_blocks(events, puppi=puppi, n=n, features=features,
                                               pad_value=-9.0), features, sums_exact=False)
    values, mask = got  # puppi=False (the weights: below)
    assert mask.tolist() == [[True] * 4, [False] * 4, [True, True, False, False], [False] * 4]
    # jet 0: p_T 5 (d0 1), 4 (d0 6), 3 (d0 3), then the first of the 2.0 ties in link order
    # (candidates 2, 0, 4, 7): candidate 2; more than n valid constituents
    assert values[0, :, 0].tolist() == [1.0, 6.0, 3.0, 2.0]
    assert values[0, :, 1].tolist() == [5.0, 4.0, 3.0, 2.0]
    assert values[0, 2, 4] == -9.0  # NaN mass: the pad value
    assert np.all(values[1] == -9.0)
    assert np.all(values[3] == -9.0)
    # jet 2: Δη and Δφ... of a NaN axis are the pad value, the rest is defined
    assert values[2, 0, 0] == 8.0
    assert values[2, 0, 2] == -9.0
    assert values[2, 1, 0] == 1.0
    assert values[2, 1, 5] == 1.0
    # p_T fractions of all 7 valid constituents (sum 20), not only of the first n
    np.testing.assert_allclose(values[0, :, 7], np.array([5, 4, 3, 2]) / 20.0, rtol=1e-6)
    weighted, _wmask = particle_list_from_events(events, n=n, features=features,
                                                pad_value=-9.0, puppi=True)
    # PUPPI: candidate 6 (w = 0) is no constituent, candidate 8 weighs 6 * 0.5 = 3 and falls
    # behind candidate 1; ties in link order (candidates 2, 0)
    assert weighted[0, :, 0].tolist() == [1.0, 3.0, 2.0, 0.0]
    assert weighted[2, :2, 0].tolist() == [1.0, 8.0]
    assert weighted[2, :2, 1].tolist() == [5.0, 3.0]
    assert weighted[0, :, 5].tolist() == [1.0, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(weighted[0, :, 7], np.array([5, 3, 2, 2]) / 16.0, rtol=1e-6)
    assert weighted[0, 3, 6] == 0.0  # d0 0's dz; candidate 7's inf dz is beyond n


def random_events(rng, n_events, *, float32, ordered=False):
    """Events with random link tables: shuffled rows, out-of-range rows, jets with 0 to ~250
    links, integer p_T (many ties), NaN/inf in every field, zero and fractional weights.
    ``ordered``: the rows sorted by jet as PFNano writes them, except that rows whose jet is
    out of range stay scattered among them (the one-pass path over the rows)."""
    jets, links, cands = [], [], []
    for _ in range(n_events):
        n_jets = int(rng.integers(0, 4))
        n_cands = int(rng.integers(0, 300))

        def noisy(values, p=0.02):
            values = values.astype(float)
            values[rng.random(len(values)) < p] = NAN
            values[rng.random(len(values)) < p / 2] = INF
            return values.tolist()

        cols = {"pt": noisy(rng.integers(-1, 8, n_cands).astype(float)),
                "eta": noisy(rng.normal(0, 1, n_cands)),
                "phi": noisy(rng.uniform(-np.pi, np.pi, n_cands)),
                "mass": noisy(rng.exponential(0.2, n_cands)),
                "pdgId": rng.choice([211, -211, 130, 22, 11, -11, 13, -13, 1, 2, 0, 321],
                                    n_cands).tolist(),
                "charge": rng.integers(-1, 2, n_cands).tolist(),
                "d0": noisy(rng.normal(0, 0.1, n_cands)),
                "dz": noisy(rng.normal(0, 0.1, n_cands)),
                "puppiWeight": rng.choice([0.0, 0.25, 1.0, 1.0], n_cands).tolist()}
        cands.append([{f: cols[f][k] for f in cols} for k in range(n_cands)])
        rows = []
        for j in range(n_jets):
            size = int(rng.choice([0, 1, 3, 49, 50, 51, 70, 250]))
            if n_cands:
                rows += [(j, int(c)) for c in rng.integers(0, n_cands, size)]
        rows += [(int(rng.integers(-2, n_jets + 3)), int(rng.integers(-3, n_cands + 3)))
                 for _ in range(3)]  # some of them out of range
        perm = rng.permutation(len(rows))
        if ordered:  # a jet out of range sorts as a random jet: kept among the others
            keys = [j if 0 <= j < n_jets else int(rng.integers(0, max(n_jets, 1)))
                    for j, _ in (rows[k] for k in perm)]
            perm = perm[np.argsort(keys, kind="stable")]
        links.append([rows[k] for k in perm])
        jets.append([{"pt": 1.0, "eta": float(rng.choice([0.3, -1.2, NAN])),
                      "phi": float(rng.uniform(-np.pi, np.pi))} for _ in range(n_jets)])
    events = build_events(jets, links, cands)
    if float32:  # as the branches are
        cands32 = ak.zip({f: ak.values_astype(events.PFCands[f], np.float32)
                          if f not in ("pdgId", "charge") else
                          ak.values_astype(events.PFCands[f], np.int32)
                          for f in events.PFCands.fields})
        fatjet = ak.zip({f: ak.values_astype(events.FatJet[f], np.float32)
                         for f in events.FatJet.fields})
        events = ak.zip({"FatJet": fatjet, "FatJetPFCands": events.FatJetPFCands,
                         "PFCands": cands32}, depth_limit=1)
    return events


@pytest.mark.parametrize("ordered", [False, True])
@pytest.mark.parametrize("float32", [True, False])
def test_flat_particle_list_same_bits_on_random_link_tables(float32, ordered):
    rng = np.random.default_rng(11 + float32)
    events = random_events(rng, 60, float32=float32, ordered=ordered)
    table = link_table(events)
    rows = (table.jet_offsets, table.cand_offsets, table.link_offsets, table.jet_index,
            table.cand_index)
    assert _jet_rows(*rows)[3] == ordered  # the one pass over the rows, or grouping first
    counts = jet_constituents(events, puppi=False).pt
    n_links = ak.to_numpy(ak.flatten(ak.num(counts, axis=2)))
    assert (n_links == 0).any()
    assert (n_links > 64).any()
    for puppi in (True, False):
        for n, pad in ((50, 0.0), (1, -5.0), (64, 2.5)):
            options = {"n": n, "features": ALL_FEATURES, "pad_value": pad}
            got = particle_list_from_events(events, puppi=puppi, **options)  # no warning
            with np.errstate(invalid="ignore"):  # the grouped paths' inf * 0 weight
                grouped = grouped_blocks(events, puppi=puppi, **options)
                awkward = awkward_blocks(events, puppi=puppi, **options)
            assert_same_blocks(got, grouped, ALL_FEATURES)
            assert_same_blocks(got, awkward, ALL_FEATURES, sums_exact=False)
    assert (got[0] == 2.5).any()
    assert got[1].any()
    assert not got[1].all()
    # chosen jets (unsorted, repeated) are those rows of every jet's blocks, on both paths
    index = rng.integers(0, len(got[0]), 50)
    chosen = particle_list_from_events(events, puppi=False, jet_index=index, **options)
    every = particle_list_from_events(events, puppi=False, **options)
    assert chosen[0].tobytes() == every[0][index].tobytes()
    np.testing.assert_array_equal(chosen[1], every[1][index])


def test_flat_particle_list_empty_chunk_and_errors(pfnano_file):
    events = load(pfnano_file)
    values, mask = particle_list_from_events(events[:0], n=5)
    assert values.shape == (0, 5, 7)
    assert mask.shape == (0, 5)
    with pytest.raises(UnknownNameError, match="'d_eta'"):
        particle_list_from_events(events, features=["d_eta"])
    with pytest.raises(InvalidArgumentError, match="positive"):
        particle_list_from_events(events, n=0)
    with pytest.raises(MissingBranchError, match="FatJetPFCands"):
        particle_list_from_events(events[["FatJet", "PFCands"]])
