"""Remote inputs: a real XRootD server on loopback serving the real CMS files.

The server is Debian's ``xrootd-server`` (``.ci/run`` installs it). Without it these tests
skip on a developer machine and FAIL under CI (``CI=true``): a missing server there is a
broken CI setup, not a reason to hide the remote path.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

# coffea's PFNanoAODSchema warns about cross-references pfnano.root does not carry
pytestmark = [
    pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning"),
]

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "svj_dense_ae.onnx"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def xrootd_server(cms_data) -> Iterator[tuple[str, Path]]:
    """``(root://127.0.0.1:PORT/, exported directory)`` with pfnano.root in it."""
    exe = shutil.which("xrootd")
    if exe is None:
        message = ("the xrootd server is not installed (Debian package xrootd-server; "
                   ".ci/run installs it)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    pytest.importorskip("fsspec_xrootd")
    # the server refuses to run as root: it runs as nobody, so the export must be world
    # readable (pytest's tmp_path is private to its user)
    export = Path(tempfile.mkdtemp(prefix="coffea-ad-xrootd-"))
    export.chmod(0o755)
    for name in ("pfnano.root", "pfnano_rntuple.root"):
        shutil.copy(cms_data / name, export / name)
        (export / name).chmod(0o644)
    port = _free_port()
    config = export / "xrootd.cfg"
    config.write_text(f"xrd.port {port}\nall.export {export}\n")
    args = [exe, "-c", str(config)]
    if os.geteuid() == 0:
        args[1:1] = ["-R", "nobody"]
    log_path = export / "xrootd.log"
    log = log_path.open("w")  # the server logs to stderr; opened here, as the test's user
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"xrootd did not start on port {port}: "
                                f"{log_path.read_text()[-800:]}")
                time.sleep(0.2)
        yield f"root://127.0.0.1:{port}/", export
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        shutil.rmtree(export, ignore_errors=True)


def test_remote_file_is_served_byte_for_byte(xrootd_server, cms_data):
    base, export = xrootd_server
    with uproot.open(f"{base}{export}/pfnano.root") as f:
        remote = f["Events"].arrays(["event", "FatJet_pt"])
    with uproot.open(cms_data / "pfnano.root") as f:
        local = f["Events"].arrays(["event", "FatJet_pt"])
    assert ak.array_equal(remote, local)


def test_score_cli_reads_root_urls_and_gives_the_local_scores(xrootd_server, cms_data,
                                                              tmp_path):
    from click.testing import CliRunner

    from coffea_ad.cli import main

    base, export = xrootd_server
    runner = CliRunner()
    for label, source in (("remote", f"{base}{export}/pfnano.root"),
                          ("local", str(cms_data / "pfnano.root"))):
        result = runner.invoke(main, ["score", source, "-m", str(MODEL),
                                      "-o", str(tmp_path / f"{label}.root")])
        assert result.exit_code == 0, result.output
    with uproot.open(tmp_path / "remote.root") as f:
        remote = f["Events"].arrays()
    with uproot.open(tmp_path / "local.root") as f:
        local = f["Events"].arrays()
    assert len(remote) == 10
    got = ak.to_numpy(ak.flatten(remote["FatJet_svj_dense_ae"]))
    want = ak.to_numpy(ak.flatten(local["FatJet_svj_dense_ae"]))
    assert len(want) == 24
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(remote["event"], local["event"])


def test_features_cli_and_run_read_root_urls(xrootd_server, cms_data, tmp_path):
    from click.testing import CliRunner

    from coffea_ad.cli import main
    from coffea_ad.execution import run_processor
    from coffea_ad.processors.svj import SVJProcessor

    base, export = xrootd_server
    url = f"{base}{export}/pfnano.root"
    runner = CliRunner()
    tables = {}
    for label, source in (("remote", url), ("local", str(cms_data / "pfnano.root"))):
        out = tmp_path / f"{label}.parquet"
        result = runner.invoke(main, ["features", source, "-o", str(out),
                                      "--features", "mass,ptd,axis_major,d2_b1"])
        assert result.exit_code == 0, result.output
        tables[label] = ak.from_parquet(out)
    assert len(tables["local"]) == 24
    assert ak.array_equal(tables["remote"], tables["local"])

    outs = {}
    for label, source in (("remote", url), ("local", str(cms_data / "pfnano.root"))):
        proc = SVJProcessor(MODEL, tag_threshold=0.3, min_pt=170.0)
        outs[label] = run_processor({"d": {"files": {source: "Events"}}}, proc,
                                    executor="iterative")
    h_remote, h_local = outs["remote"]["hists"]["events"], outs["local"]["hists"]["events"]
    assert h_local.sum(flow=True).value == 10
    np.testing.assert_array_equal(h_remote.values(flow=True), h_local.values(flow=True))


def test_missing_local_input_is_one_clear_line(tmp_path):
    from click.testing import CliRunner

    from coffea_ad.cli import main

    result = CliRunner().invoke(main, ["score", str(tmp_path / "nope.root"), "-m", str(MODEL),
                                       "-o", str(tmp_path / "out.root")])
    assert result.exit_code == 1
    assert "nope.root does not exist" in result.output
    assert "Traceback" not in result.output
