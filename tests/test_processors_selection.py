"""The numpy selection helpers of the processors: the leading good-jet pair as flat indices
against a plain per-event loop, and one numpy selection run on typetracers (dask-awkward's
column-projection pass) giving the types of its eager run and reading exactly its inputs."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from coffea_ad.errors import InvalidArgumentError
from coffea_ad.processors._common import (
    eager_columns,
    event_rows,
    leading_pair,
    leading_pair_index,
)


def _loop_pairs(counts, good):
    """Obviously right: walk each event's jets in order, keep the first two good ones."""
    has, first, second = [], [], []
    start = 0
    for n in counts:
        idx = [start + k for k in range(n) if good[start + k]]
        has.append(len(idx) >= 2)
        if len(idx) >= 2:
            first.append(idx[0])
            second.append(idx[1])
        start += n
    return np.array(has, bool), np.array(first, np.int64), np.array(second, np.int64)


@pytest.mark.parametrize("seed", range(5))
def test_leading_pair_index_matches_a_loop_and_the_awkward_pair(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 6, 300)
    counts[:3] = [0, 1, 5]  # empty events and a single jet at the start
    pt = rng.uniform(100.0, 600.0, counts.sum())
    good = pt > 250.0
    has, first, second = leading_pair_index(counts, good)
    want = _loop_pairs(counts, good)
    np.testing.assert_array_equal(has, want[0])
    np.testing.assert_array_equal(first, want[1])
    np.testing.assert_array_equal(second, want[2])
    # the awkward leading_pair of the same jets picks the same p_T values
    jets = ak.unflatten(ak.zip({"pt": pt}), counts)
    has_ak, lead = leading_pair(jets, jets.pt > 250.0)
    np.testing.assert_array_equal(ak.to_numpy(has_ak), has)
    np.testing.assert_array_equal(ak.to_numpy(lead.pt[:, 0]), pt[first])
    np.testing.assert_array_equal(ak.to_numpy(lead.pt[:, 1]), pt[second])


def test_leading_pair_index_without_events_or_good_jets():
    has, first, second = leading_pair_index(np.zeros(0, np.int64), np.zeros(0, bool))
    assert has.shape == first.shape == second.shape == (0,)
    has, first, second = leading_pair_index(np.array([2, 3]), np.zeros(5, bool))
    np.testing.assert_array_equal(has, [False, False])
    assert len(first) == len(second) == 0


def _select(a, *, cut):
    """A small numpy selection: events with a jet above ``cut``, their summed p_T and the
    passing jets' p_T, as one-row-per-selected-event lists."""
    counts = ak.to_numpy(ak.num(a["pt"], axis=1))
    pt = ak.to_numpy(ak.flatten(a["pt"], axis=1))
    event = np.repeat(np.arange(len(counts)), counts)
    passing = pt > cut
    n_pass = np.bincount(event[passing], minlength=len(counts))
    selected = n_pass > 0
    # float64 whatever the length: numpy's bincount of zero entries is int64 even with
    # weights, which would give the typetracer run (length-zero inputs) another type
    total = np.bincount(event, weights=pt, minlength=len(counts)).astype(np.float64)[selected]
    w = ak.to_numpy(a["w"])[selected]
    rows = ak.unflatten(ak.zip({"sum_pt": total, "weight": w}), selected.astype(np.int64))
    jets = ak.unflatten(pt[passing], n_pass)
    return {"rows": rows, "jets": jets}, [ak.Array(selected)]


def test_eager_columns_on_typetracers_gives_the_eager_types_and_reads_only_its_inputs():
    events = ak.Array({
        "Jet": [[{"pt": 30.0, "eta": 0.1}, {"pt": 80.0, "eta": -1.0}], [],
                [{"pt": 10.0, "eta": 2.0}]],
        "w": [1.0, 2.0, 0.5],
        "unused": [1, 2, 3],
    })
    eager, masks = eager_columns(_select, {"pt": events.Jet.pt, "w": events.w}, cut=50.0)
    assert eager["rows"].tolist() == [[{"sum_pt": 110.0, "weight": 1.0}], [], []]
    assert eager["jets"].tolist() == [[80.0], [], []]
    assert masks[0].tolist() == [True, False, False]

    form = events.layout.form_with_key()
    meta, report = ak.typetracer.typetracer_with_report(form)
    lazy = ak.Array(meta)
    out, lazy_masks = eager_columns(_select, {"pt": lazy.Jet.pt, "w": lazy.w}, cut=50.0)
    for key in ("rows", "jets"):
        assert ak.backend(out[key]) == "typetracer"
        assert str(out[key].type.content) == str(eager[key].type.content)
    assert str(lazy_masks[0].type.content) == str(masks[0].type.content)
    jet_list = form.content("Jet")
    wanted = {jet_list.form_key, jet_list.content.content("pt").form_key,
              form.content("w").form_key}
    assert set(report.data_touched) == wanted  # not Jet.eta, not unused


def test_event_rows_equals_zip_and_unflatten():
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 3, 50)
    n = int(counts.sum())
    cols = {"score": rng.random(n).astype(np.float32), "mt": rng.random(n),
            "category": rng.integers(0, 3, n)}
    got = event_rows(cols, counts)
    want = ak.unflatten(ak.zip(cols), counts)
    assert got.tolist() == want.tolist()
    assert str(got.type) == str(want.type)
    assert event_rows({"x": np.zeros(0)}, np.zeros(4, np.int64)).tolist() == [[], [], [], []]
    with pytest.raises(InvalidArgumentError, match="column 'mt' has shape"):
        event_rows({"score": cols["score"], "mt": cols["mt"][:-1]}, counts)
