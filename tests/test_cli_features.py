"""``coffea-ad features``, run as a user runs it (the real console script in a subprocess)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import awkward as ak
import numpy as np

from coffea_ad.features import JET_FEATURES, jet_table


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("coffea-ad"))  # the script of this environment
    cmd = [exe, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def test_table_of_real_pfnano_equals_library(pfnano_file, tmp_path):
    out = tmp_path / "sub" / "table.parquet"
    res = _cli("features", str(pfnano_file), "-o", str(out), "--jets", "FatJet")
    assert res.returncode == 0, res.stderr
    assert "wrote 24 jets" in res.stdout
    table = ak.from_parquet(out)
    assert table.fields == ["run", "luminosityBlock", "event", "jet_index", *JET_FEATURES]

    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cross-references absent in the file
        events = NanoEventsFactory.from_root({str(pfnano_file): "Events"},
                                             schemaclass=PFNanoAODSchema,
                                             mode="virtual").events()
    want = jet_table(events)
    for name in table.fields:
        np.testing.assert_array_equal(ak.to_numpy(table[name]), ak.to_numpy(want[name]), name)
    assert ak.to_numpy(table["jet_index"]).tolist()[:5] == [0, 1, 2, 0, 1]


def test_file_without_pf_candidates_says_what_to_do(cms_data, tmp_path):
    res = _cli("features", str(cms_data / "nano_dy.root"), "-o", str(tmp_path / "t.parquet"))
    assert res.returncode != 0
    assert "FatJetPFCands" in res.stderr
    assert "--features pt,eta" in res.stderr
    assert "Traceback" not in res.stderr


def test_empty_file_gives_empty_well_formed_table(cms_data, tmp_path):
    out = tmp_path / "empty.parquet"
    res = _cli("features", str(cms_data / "nano_dy_empty.root"), "-o", str(out),
               "--features", "pt,msoftdrop,tau21")
    assert res.returncode == 0, res.stderr
    table = ak.from_parquet(out)
    assert len(table) == 0
    assert table.fields == ["run", "luminosityBlock", "event", "jet_index", "pt", "msoftdrop",
                            "tau21"]
    assert str(table.type.content.contents[-1]) == "float32"


def test_list_prints_every_feature_with_its_definition(pfnano_file, tmp_path):
    res = _cli("features", str(pfnano_file), "-o", str(tmp_path / "x.parquet"), "--list")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(JET_FEATURES)
    assert any("1408.3122" in line for line in lines if line.startswith("lha"))
