"""Typed settings (coffea_ad.config): --set strings and config files converted to the types of
a recipe's CONFIG defaults."""

from __future__ import annotations

import pytest

from coffea_ad.config import ConfigError, load_config_file, resolve_settings
from coffea_ad.errors import UnknownNameError

DEFAULTS = {"train_datasets": None, "hidden": [10, 10], "lr": 1e-3, "epochs": 100,
            "pt_flatten": False, "features": ["eta", "mass"], "jets": "FatJet", "other": None}


def test_set_strings_take_the_type_of_the_default():
    got = resolve_settings(DEFAULTS, overrides=(
        "train_datasets=qcd_train", "hidden=8,4", "lr=0.01", "epochs=3", "pt_flatten=true",
        "features=[\"pt\", \"eta\"]", "jets=Jet", "other=2.5"))
    # one dataset name is a list of one name, not its letters
    assert got == {"train_datasets": ["qcd_train"], "hidden": [8, 4], "lr": 0.01, "epochs": 3,
                   "pt_flatten": True, "features": ["pt", "eta"], "jets": "Jet", "other": 2.5}
    assert resolve_settings(DEFAULTS, overrides=("train_datasets=qcd,ttbar",)) == {
        "train_datasets": ["qcd", "ttbar"]}


def test_wrong_type_and_unknown_key_are_refused_with_the_key():
    with pytest.raises(ConfigError, match=r"epochs='many': expected int"):
        resolve_settings(DEFAULTS, overrides=("epochs=many",))
    with pytest.raises(ConfigError, match="hidden"):
        resolve_settings(DEFAULTS, overrides=("hidden=8,x",))
    with pytest.raises(UnknownNameError, match="hiden"):
        resolve_settings(DEFAULTS, overrides=("hiden=8",))
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        resolve_settings(DEFAULTS, overrides=("epochs",))


def test_config_file_then_set(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('hidden = [16, 8]\nepochs = 5\ntrain_datasets = ["qcd_train"]\n')
    yml = tmp_path / "c.yaml"
    yml.write_text("hidden: [4]\nlr: 0.5\n")
    got = resolve_settings(DEFAULTS, file_values=load_config_file(toml),
                           overrides=("epochs=7",))
    assert got == {"hidden": [16, 8], "epochs": 7, "train_datasets": ["qcd_train"]}
    assert resolve_settings(DEFAULTS, file_values=load_config_file(yml)) == {
        "hidden": [4], "lr": 0.5}
    bad = tmp_path / "bad.toml"
    bad.write_text("hidden = [16,\n")
    with pytest.raises(ConfigError, match="not valid toml"):
        load_config_file(bad)
    with pytest.raises(ConfigError, match=r"epochs=.*expected int"):
        resolve_settings(DEFAULTS, file_values={"epochs": "ten"})
