"""``coffea-ad run`` settings through the console script: a config file and ``--set`` typed by
the processor's arguments, and the resolved configuration recorded whole in run.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("coffea-ad")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          check=False,
                          env={"OMP_NUM_THREADS": "1", "PATH": str(SCRIPT.parent),
                               "HOME": str(Path.home()),
                               # a checkout put first on the path must be the code tested
                               **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}})


def test_config_file_then_set_list_values_and_run_json_holds_the_resolved_settings(
        small_fileset, tiny_ae_onnx, tmp_path):
    from coffea_ad.rundir import read_run_dir

    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps(small_fileset))
    config = tmp_path / "bump.toml"
    config.write_text('min_pt = 150\ncombine = "max"\nmjj_edges = [0, 500, 1000]\n')
    out = tmp_path / "run"
    res = _cli("run", "bumphunt", "--fileset", str(fileset), "--model", str(tiny_ae_onnx),
               "--executor", "iterative", "--no-progress", "--config", str(config),
               "--set", "mjj_edges=0,1000,2000,8000", "--set", "sideband_deta=1.3",
               "-o", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    result, info = read_run_dir(out)
    given = {"min_pt": 150.0, "combine": "max", "mjj_edges": [0.0, 1000.0, 2000.0, 8000.0],
             "sideband_deta": 1.3}
    assert info["settings"] == given  # the file's values, then --set's (the list replaced)
    proc = info["configuration"]["processor"]
    assert proc["config_file"] == {"path": str(config.resolve()),
                                   "values": {"min_pt": 150, "combine": "max",
                                              "mjj_edges": [0, 500, 1000]}}
    resolved = proc["resolved"]
    assert {k: resolved[k] for k in given} == given
    # defaults are recorded too, with the values the processor's signature gives
    assert resolved["max_eta"] == 2.5
    assert resolved["threshold_name"] == "qr_threshold"
    assert resolved["lumi_fb"] is None
    # the processor ran with them: the m_jj axis is the list, the cutflow names the cuts
    assert list(result["hists"]["events"].axes["mjj"].edges) == [0.0, 1000.0, 2000.0, 8000.0]
    steps = list(result["cutflow"]["qcd"])
    assert steps[1] == ">=2 FatJet (pt>150, |eta|<2.5)"
    assert steps[2] == "search region |deta_jj|<=1.3"


def test_a_setting_of_the_wrong_type_is_refused_with_its_key(tiny_ae_onnx, tmp_path):
    fileset = tmp_path / "f.json"
    fileset.write_text("{}")
    res = _cli("run", "bumphunt", "--fileset", str(fileset), "--model", str(tiny_ae_onnx),
               "--set", "mjj_edges=0,high", "-o", str(tmp_path / "out"))
    assert res.returncode == 2
    assert "mjj_edges" in res.stderr
    assert "expected" in res.stderr
    assert not (tmp_path / "out").exists()
