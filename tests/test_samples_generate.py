"""The generator driver: same seed -> same content, resuming after damage, errors, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")

from coffea_ad.errors import UnknownNameError
from coffea_ad.samples import PROCESSES, generate, generate_fileset, resolve_settings, verify_file

SMALL = {"pthat_min": 300.0}  # lighter events: these tests are about bookkeeping


def read_all(path: str | Path) -> dict[str, np.ndarray]:
    with uproot.open(path) as f:
        return f["Events"].arrays(library="np")


def same_content(a: str | Path, b: str | Path) -> bool:
    xa, xb = read_all(a), read_all(b)
    if xa.keys() != xb.keys():
        return False
    for key in xa:
        va, vb = xa[key], xb[key]
        if va.dtype == object:  # jagged: compare event by event
            if len(va) != len(vb) or not all(np.array_equal(p, q) for p, q in zip(va, vb, strict=False)):
                return False
        elif not np.array_equal(va, vb):
            return False
    return True


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory):
    """The same request run twice, in one process and with two workers: 2 files of 30 events."""
    a = tmp_path_factory.mktemp("run_a")
    b = tmp_path_factory.mktemp("run_b")
    fa = generate("qcd", events=60, seed=11, out=a, settings=SMALL, events_per_file=30)
    fb = generate("qcd", events=60, seed=11, out=b, settings=SMALL, events_per_file=30, jobs=2)
    return a, b, fa, fb


def test_same_seed_gives_identical_content_whatever_jobs(twin_runs):
    _, _, fa, fb = twin_runs
    files_a, files_b = sorted(fa["qcd"]["files"]), sorted(fb["qcd"]["files"])
    assert len(files_a) == len(files_b) == 2
    for pa, pb in zip(files_a, files_b, strict=False):
        assert same_content(pa, pb)
    # the two files of a dataset are different events (distinct per-file seeds) ...
    assert not same_content(files_a[0], files_a[1])
    # ... numbered consecutively, with luminosityBlock = file index + 1
    ev = [read_all(p) for p in files_a]
    assert ev[0]["event"].tolist() == list(range(1, 31))
    assert ev[1]["event"].tolist() == list(range(31, 61))
    assert set(ev[1]["luminosityBlock"].tolist()) == {2}
    ma, mb = fa["qcd"]["metadata"], fb["qcd"]["metadata"]
    assert ma["xsec"] == mb["xsec"]
    assert ma["sumw"] == mb["sumw"] == 60


def test_different_seed_gives_different_events(twin_runs, tmp_path):
    _a, _, fa, _ = twin_runs
    other = generate("qcd", events=30, seed=12, out=tmp_path, settings=SMALL, events_per_file=30)
    assert not same_content(min(fa["qcd"]["files"]), next(iter(other["qcd"]["files"])))


def test_truncated_file_is_regenerated_and_good_file_reused(twin_runs):
    a, b, fa, _ = twin_runs
    first, second = sorted(fa["qcd"]["files"])
    reference = min(Path(b).glob("qcd/*.root"))  # the twin run's first file
    # damage the first file: cut it in half (what a killed job leaves)
    data = Path(first).read_bytes()
    Path(first).write_bytes(data[: len(data) // 2])
    assert verify_file(first) is None
    mtime_second = os.stat(second).st_mtime_ns
    again = generate("qcd", events=60, seed=11, out=a, settings=SMALL, events_per_file=30)
    assert verify_file(first) is not None
    assert same_content(first, reference)
    assert os.stat(second).st_mtime_ns == mtime_second  # verified, not rewritten
    assert again["qcd"]["metadata"]["sumw"] == 60


def test_file_with_same_size_but_altered_bytes_is_not_trusted(twin_runs):
    a, _, fa, _ = twin_runs
    second = sorted(fa["qcd"]["files"])[1]
    assert verify_file(second) is not None
    raw = bytearray(Path(second).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    Path(second).write_bytes(bytes(raw))
    assert verify_file(second) is None  # sha256 recorded at completion no longer matches
    # a request with other settings does not accept a file made with different ones
    generate("qcd", events=60, seed=11, out=a, settings=SMALL, events_per_file=30)
    assert verify_file(second, {"settings": resolve_settings("qcd", SMALL)}) is not None
    assert verify_file(second, {"settings": resolve_settings("qcd", {"pthat_min": 301.0})}) is None


def test_fileset_json_is_merged_across_calls(tmp_path):
    generate("qcd", events=10, seed=1, out=tmp_path, settings=SMALL, dataset="qcd_a")
    generate("qcd", events=10, seed=1, out=tmp_path, settings=SMALL, dataset="qcd_b")
    on_disk = json.loads((tmp_path / "fileset.json").read_text())
    assert set(on_disk) == {"qcd_a", "qcd_b"}
    # different dataset names -> different per-file seeds -> different events
    fa, fb = (next(iter(on_disk[d]["files"])) for d in ("qcd_a", "qcd_b"))
    assert not same_content(fa, fb)


# ------------------------------------------------------------------------------ errors
def test_unknown_process_lists_valid_ones(tmp_path):
    with pytest.raises(UnknownNameError) as err:
        generate("qcdd", events=10, seed=1, out=tmp_path)
    msg = str(err.value)
    assert "'qcdd'" in msg
    assert all(name in msg for name in PROCESSES)
    assert isinstance(err.value, KeyError)


def test_unknown_setting_lists_valid_ones(tmp_path):
    with pytest.raises(UnknownNameError) as err:
        generate("svj", events=10, seed=1, out=tmp_path, settings={"r_inv": 0.5})
    msg = str(err.value)
    assert "'r_inv'" in msg
    assert "rinv" in msg
    assert "mzprime" in msg
    assert "detector.track_pt_min" in msg
    with pytest.raises(UnknownNameError, match="peak"):
        resolve_settings("svj", {"alpha_dark": "highest"})
    with pytest.raises(UnknownNameError, match="events_per_file"):
        generate_fileset({"x": {"process": "qcd", "events": 5, "nevents": 5}}, out=tmp_path, seed=1)
    with pytest.raises(TypeError, match="expects float"):
        resolve_settings("qcd", {"pthat_min": "high"})
    assert not any(tmp_path.iterdir())  # nothing is generated for an invalid request


def test_settings_resolution_types_and_svj_lambda():
    s = resolve_settings("svj", {"mzprime": 2000, "alpha_dark": "0.2", "mpi": "true"})
    assert s["mzprime"] == 2000.0
    assert isinstance(s["mzprime"], float)
    assert s["alpha_dark"] == 0.2
    assert s["mpi"] is True
    from coffea_ad.samples.processes import svj_lambda

    # α(1 TeV) = 2π / (b0 ln(1000/Λ)) must invert svj_lambda; b0 = 11 - 4/3 for N_c=3, N_f=2
    lam = svj_lambda(0.2, 20.0)
    b0 = 11.0 - 4.0 / 3.0
    assert 2 * np.pi / (b0 * np.log(1000.0 / lam)) == pytest.approx(0.2)
    assert svj_lambda("peak", 20.0) == pytest.approx(3.2 * 20.0**0.8)


# ------------------------------------------------------------------------------ CLI
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("coffea-ad")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300, check=False)


def test_cli_generate_writes_fileset_with_overrides(tmp_path):
    res = _cli("generate", "zjets", "--events", "20", "--seed", "4", "--out", "out",
               "--set", "z_decay=leptonic", "--set", "pthat_min=150", "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    meta = json.loads((tmp_path / "out" / "fileset.json").read_text())["zjets"]["metadata"]
    assert meta["settings"]["z_decay"] == "leptonic"
    assert meta["settings"]["pthat_min"] == 150.0
    assert meta["nevents"] == 20
    assert "zjets: 20 events in 1 file(s)" in res.stdout


def test_cli_rejects_unknown_names_with_the_valid_ones(tmp_path):
    res = _cli("generate", "nope", "--events", "5", "--seed", "1", "--out", "o", cwd=tmp_path)
    assert res.returncode == 2
    assert "unknown process 'nope'" in res.stderr
    assert "svj" in res.stderr
    res = _cli("generate", "qcd", "--events", "5", "--seed", "1", "--out", "o", "--set", "bogus=1",
               cwd=tmp_path)
    assert res.returncode == 2
    assert "'bogus'" in res.stderr
    assert "pthat_min" in res.stderr
    assert not (tmp_path / "o").exists()


def test_pthat_flattening_weights_follow_the_bias_power(tmp_path):
    """With flatten_pthat = p, Pythia samples with bias (p̂T/p̂T_min)^p and genWeight undoes it:
    log w = const - p log p̂T exactly, with p̂T the pT of the outgoing hard partons."""
    import awkward as ak

    power = 4.5
    fs = generate("qcd", events=60, seed=5, out=tmp_path, settings={**SMALL, "flatten_pthat": power})
    path = next(iter(fs["qcd"]["files"]))
    with uproot.open(path) as f:
        ev = f["Events"].arrays(["genWeight", "GenPart_pt", "GenPart_status"])
    hard_pt = ev.GenPart_pt[abs(ev.GenPart_status) == 23]
    assert ak.all(ak.num(hard_pt) == 2)
    pthat = ak.to_numpy(ak.fill_none(ak.max(hard_pt, axis=1), np.nan)).astype(float)
    w = ak.to_numpy(ev.genWeight).astype(float)
    slope = np.polyfit(np.log(pthat), np.log(w), 1)[0]
    assert slope == pytest.approx(-power, abs=2e-3)
    assert w.std() > 0.1 * w.mean()  # the weights really vary
    assert fs["qcd"]["metadata"]["sumw"] == pytest.approx(w.sum(), rel=1e-5)
    # flattening pushes the sample to high p̂T: the median is well above the unbiased one
    assert np.median(pthat) > 1.5 * SMALL["pthat_min"]


def test_fastjet_substructure_setting_gives_the_same_file(twin_runs, tmp_path):
    """``substructure=fastjet`` (fastjet-contrib) and the default numba kernels write the same
    events: identical branches except msoftdrop/tau_N, which agree to float32 precision."""
    _, _, fa, _ = twin_runs
    fs = generate("qcd", events=30, seed=11, out=tmp_path, dataset="qcd",
                  settings={**SMALL, "substructure": "fastjet"}, events_per_file=30)
    ours, ref = read_all(min(fa["qcd"]["files"])), read_all(next(iter(fs["qcd"]["files"])))
    assert ours.keys() == ref.keys()
    sub = {"FatJet_msoftdrop", "FatJet_tau1", "FatJet_tau2", "FatJet_tau3", "FatJet_tau4"}
    for key in ours:
        a, b = ours[key], ref[key]
        if ours[key].dtype == object:
            a, b = np.concatenate(list(a)), np.concatenate(list(b))
        if key in sub:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=key)
        else:
            assert np.array_equal(a, b), key
    assert fs["qcd"]["metadata"]["settings"]["substructure"] == "fastjet"


def test_more_jobs_than_files_warns_and_still_generates_everything(tmp_path):
    # files are the unit of parallelism: jobs beyond the number of files cannot help, say so
    with pytest.warns(UserWarning, match=r"jobs=3 but only 1 file\(s\)"):
        fs = generate("qcd", events=12, seed=4, out=tmp_path, settings=SMALL, jobs=3)
    (path,) = fs["qcd"]["files"]
    with uproot.open(path) as f:
        assert f["Events"].num_entries == 12
        assert f["Events"]["event"].array(library="np").tolist() == list(range(1, 13))


def test_show_settings_needs_only_the_process_and_generating_names_what_is_missing(tmp_path):
    res = _cli("generate", "svj", "--show-settings", "--set", "rinv=0.5", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    assert shown["rinv"] == 0.5
    assert shown == resolve_settings("svj", {"rinv": 0.5})
    res = _cli("generate", "svj", "--events", "5", cwd=tmp_path)
    assert res.returncode == 2
    assert "--seed, --out" in res.stderr
    assert not list(tmp_path.iterdir())


def test_progress_moves_per_chunk_of_events_in_process_and_in_workers(tmp_path, monkeypatch,
                                                                       capsys):
    import importlib

    gen_module = importlib.import_module("coffea_ad.samples.generate")
    monkeypatch.setattr(gen_module, "_CHUNK", 10)
    _, tasks = gen_module._plan({"q": {"process": "qcd", "events": 25, "settings": SMALL}},
                                out=tmp_path / "a", seed=3)
    ticks: list[int] = []
    gen_module._run_file(tasks[0], ticks.append)
    assert ticks == [10, 10, 5]  # one tick per chunk, not one per file
    # two worker processes: their chunk ticks travel back through a queue; the bar must end
    # at the full count (tqdm writes its last state on stderr)
    generate("qcd", events=40, seed=3, out=tmp_path / "b", settings=SMALL, events_per_file=20,
             jobs=2, progress=True)
    err = capsys.readouterr().err
    assert "40/40" in err
