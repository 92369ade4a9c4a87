"""The console script, run as a new user runs it (a real subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import coffea_ad


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("coffea-ad"))  # the script of this environment
    cmd = [exe, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_version():
    res = _cli("--version")
    assert res.returncode == 0
    assert coffea_ad.__version__ in res.stdout


def test_help_lists_every_verb():
    res = _cli("--help")
    assert res.returncode == 0
    for verb in ("demo", "generate", "features", "train", "score", "inspect", "run", "report"):
        assert verb in res.stdout


def test_every_verb_has_help():
    from coffea_ad.cli import COMMANDS

    for verb in COMMANDS:
        res = _cli(verb, "--help")
        assert res.returncode == 0, (verb, res.stderr)
        assert "Usage:" in res.stdout


def test_unknown_processor_is_named(tmp_path):
    fileset = tmp_path / "f.json"
    fileset.write_text("{}")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    res = _cli("run", "nope", "--fileset", str(fileset), "--model", str(model), "-o", str(tmp_path))
    assert res.returncode != 0
    assert "unknown processor 'nope'" in res.stderr
    assert "svj" in res.stderr


def test_missing_or_unknown_processor_setting_names_the_settings(tmp_path):
    fileset = tmp_path / "f.json"
    fileset.write_text("{}")
    model = Path(__file__).resolve().parents[1] / "models" / "svj_dense_ae.onnx"
    res = _cli("run", "svj", "--fileset", str(fileset), "--model", str(model), "-o", str(tmp_path))
    assert res.returncode == 2
    assert "required --set keys: ['tag_threshold']" in res.stderr
    assert "max_deta" in res.stderr  # the optional ones are listed too
    res = _cli("run", "svj", "--fileset", str(fileset), "--model", str(model), "-o", str(tmp_path),
               "--set", "tag_threshold=0.3", "--set", "tag_treshold=0.2")
    assert res.returncode == 2
    assert "tag_treshold" in res.stderr


@pytest.mark.parametrize("pair", ["a", "=1"])
def test_parse_settings_rejects_bad_pairs(pair):
    import click

    from coffea_ad.cli import parse_settings

    if pair == "=1":
        assert parse_settings((pair,)) == {"": 1}
    else:
        with pytest.raises(click.BadParameter, match="key=value"):
            parse_settings((pair,))


def test_parse_settings_types():
    from coffea_ad.cli import parse_settings

    assert parse_settings(("n=3", "x=0.5", "flag=true", "name=qcd")) == {
        "n": 3, "x": 0.5, "flag": True, "name": "qcd"}


def test_run_takes_a_users_processor_as_module_colon_class(tmp_path):
    """``coffea-ad run module:Class``: a class importable by the user runs like a built-in
    name; a missing module or a class that is not a coffea processor is a usage error."""
    from coffea_ad.processors import get_processor
    from coffea_ad.processors.svj import SVJProcessor

    assert get_processor("coffea_ad.processors.svj:SVJProcessor") is SVJProcessor
    assert get_processor("svj") is SVJProcessor
    with pytest.raises(TypeError, match="ProcessorABC"):
        get_processor("coffea_ad.processors.svj:abcd_histogram")
    fileset = tmp_path / "f.json"
    fileset.write_text("{}")
    model = Path(__file__).resolve().parents[1] / "models" / "svj_dense_ae.onnx"
    res = _cli("run", "no_such_module_xyz:Proc", "--fileset", str(fileset), "--model",
               str(model), "-o", str(tmp_path / "out"))
    assert res.returncode == 2
    assert "no_such_module_xyz" in res.stderr
