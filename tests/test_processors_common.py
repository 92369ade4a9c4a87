"""Per-dataset histograms stacked in postprocess equal histograms filled with every dataset."""

from __future__ import annotations

import numpy as np
import pytest

from coffea_ad.histos import score_mass_histogram
from coffea_ad.processors._common import merge_dataset_histograms, stack_datasets


def _events(seed: int, n: int):
    rng = np.random.default_rng(seed)
    return {"category": rng.integers(0, 3, n), "score": rng.lognormal(-1, 1, n),
            "mt": rng.uniform(0, 6500, n), "weight": rng.uniform(0.5, 2.0, n)}


def test_stacked_equals_one_histogram_filled_with_all_datasets():
    reference = score_mass_histogram()
    parts = []
    for k, ds in enumerate(["zz", "qcd", "svj"]):
        ev = _events(k, 500 + 100 * k)
        reference.fill(dataset=ds, systematic="nominal", **ev)
        h = score_mass_histogram()
        h.fill(dataset=ds, systematic="nominal", **ev)
        parts.append((ds, h))
    out = merge_dataset_histograms({"hists_by_dataset": {ds: {"events": h} for ds, h in parts}})
    stacked = out["hists"]["events"]
    assert "hists_by_dataset" not in out
    assert list(stacked.axes["dataset"]) == ["qcd", "svj", "zz"]  # sorted: executor-independent
    for ds in ("qcd", "svj", "zz"):
        a = stacked[{"dataset": ds}].view(flow=True)
        b = reference[{"dataset": ds}].view(flow=True)
        np.testing.assert_array_equal(a["value"], b["value"])
        np.testing.assert_array_equal(a["variance"], b["variance"])
        assert a["value"].sum() > 0


def test_stack_falls_back_to_hist_addition_when_other_categories_differ():
    a, b = score_mass_histogram(), score_mass_histogram()
    ev = _events(5, 300)
    a.fill(dataset="qcd", systematic="nominal", **ev)
    b.fill(dataset="svj", systematic="jes_up", **ev)
    out = stack_datasets([("qcd", a), ("svj", b)])
    assert sorted(out.axes["systematic"]) == ["jes_up", "nominal"]
    assert out[{"dataset": "svj", "systematic": "jes_up"}].sum(flow=True).value == pytest.approx(
        ev["weight"].sum())
    assert out[{"dataset": "svj", "systematic": "nominal"}].sum(flow=True).value == 0
