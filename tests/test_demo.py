"""The new user's first command, `coffea-ad demo`, run for real on small sizes: Pythia8 +
FastJet samples, training of the p_T-conditioned flow and ONNX export, a Dask LocalCluster
with 2 workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import hist
import numpy as np
import pytest
from coffea.util import load

from coffea_ad.demo import OUTPUT_FILES

pytestmark = pytest.mark.dask


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    exe = Path(sys.executable).with_name("coffea-ad")  # the console script of this environment
    cmd = [str(exe), "demo", "--out", str(out), "--train-events", "1200",
           "--bkg-events", "800", "--sig-events", "600", "--epochs", "25", "--chunksize", "300"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res.stdout


def test_writes_every_listed_file(demo_out):
    out, _ = demo_out
    missing = [f for f in OUTPUT_FILES if not (out / f).is_file()]
    assert not missing
    assert (out / "plots" / "roc.png").stat().st_size > 10_000


def test_prints_the_auc_it_saved(demo_out):
    out, stdout = demo_out
    summary = json.loads((out / "summary.json").read_text())
    auc = summary["auc_jets_leading2"]
    assert f"svj vs qcd (two leading AK8 jets): {auc:.3f}" in stdout
    # semivisible jets are more anomalous to the QCD-trained flow than QCD jets are
    assert 0.55 < auc < 1.0


def test_histograms_agree_with_cutflow_and_auc(demo_out):
    from sklearn.metrics import roc_auc_score

    out, _ = demo_out
    summary = json.loads((out / "summary.json").read_text())
    result = load(out / "histograms.coffea")
    h_ev, h_jets = result["hists"]["events"], result["hists"]["jets"]
    for ds in ("qcd", "svj"):
        selected = list(result["cutflow"][ds].values())[-1]
        entries = h_ev[{"dataset": ds}].sum(flow=True).value
        assert entries == selected  # genWeight is 1 for these samples
        assert h_jets[{"dataset": ds}].sum(flow=True).value == 2 * selected
        assert sum(summary["events_per_category"][ds].values()) == selected
        assert result["entries"][ds] == summary["config"][f"{'bkg' if ds == 'qcd' else 'sig'}_events"]
    # signal has more doubly tagged events, relative to its total, than QCD
    frac2 = {ds: summary["events_per_category"][ds]["2"] / sum(summary["events_per_category"][ds].values())
             for ds in ("qcd", "svj")}
    assert frac2["svj"] > frac2["qcd"]
    # the printed AUC equals sklearn's on the binned jet scores (bin centres, counts as weights)
    edges = h_jets.axes["score"].edges
    centres = np.concatenate([[edges[0] / 2], np.sqrt(edges[:-1] * edges[1:]), [edges[-1] * 2]])
    wb = h_jets[{"dataset": hist.loc("qcd")}].values(flow=True)
    ws = h_jets[{"dataset": hist.loc("svj")}].values(flow=True)
    y = np.r_[np.zeros_like(centres), np.ones_like(centres)]
    ref = roc_auc_score(y, np.r_[centres, centres], sample_weight=np.r_[wb, ws])
    assert summary["auc_jets_leading2"] == pytest.approx(ref, abs=1e-9)


def test_onnx_model_has_its_contract(demo_out):
    from coffea_ad.inference import OnnxScorer

    out, _ = demo_out
    scorer = OnnxScorer(out / "models" / "svj_flow.onnx")
    assert scorer.contract.features[0] == "log_pt"
    assert not {"phi", "eta", "pt", "mass"} & set(scorer.contract.features)
    assert scorer.contract.jets == "FatJet"
    assert scorer.contract.score == "score"


def test_working_point_comes_from_the_independent_qcd_sample(demo_out):
    out, _ = demo_out
    summary = json.loads((out / "summary.json").read_text())
    contract = json.loads((out / "models" / "svj_flow.json").read_text())
    assert contract["training"]["datasets"] == ["qcd_train"]
    assert summary["calibration_dataset"] == "qcd_calib"
    assert summary["calibration_dataset"] not in contract["training"]["datasets"]
