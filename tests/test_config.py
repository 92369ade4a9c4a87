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


def test_processor_settings_are_typed_by_the_constructor_annotations():
    from coffea_ad.config import processor_settings
    from coffea_ad.processors import get_processor

    def resolve(name, *pairs, file_values=None):
        defaults, types, other = processor_settings(get_processor(name))
        return resolve_settings(defaults, types=types, other_keys=other, overrides=pairs,
                                file_values=file_values)

    # a number where the type also takes a string, the string otherwise
    assert resolve("svj", "tag_threshold=0.3", "tag_threshold=0.25") == {"tag_threshold": 0.25}
    assert resolve("svj", "tag_threshold=model") == {"tag_threshold": "model"}
    assert resolve("svj", "min_pt=150", "max_deta=none") == {"min_pt": 150.0, "max_deta": None}
    # lists from a,b or JSON; one item is a list of one
    assert resolve("bumphunt", "mjj_edges=0,1000,8000") == {"mjj_edges": [0.0, 1000.0, 8000.0]}
    assert resolve("bumphunt", "mjj_edges=[0, 500]") == {"mjj_edges": [0.0, 500.0]}
    assert resolve("vbs", "leptons=Muon", "same_sign=false") == {"leptons": ["Muon"],
                                                                  "same_sign": False}
    # a mapping from k=v,k2=v2
    assert resolve("vbs", "models=dnn=a.onnx,vae=b.onnx") == {
        "models": {"dnn": "a.onnx", "vae": "b.onnx"}}
    # the resonant signal region: "low:high" stays the string the processor parses
    assert resolve("resonant", "signal_region=1300:1700") == {"signal_region": "1300:1700"}
    assert resolve("resonant", "signal_region=1300,1700") == {"signal_region": (1300.0, 1700.0)}
    # a config file's values are validated the same way, then --set wins
    assert resolve("svj", "min_pt=170", file_values={"min_pt": 150, "lumi_fb": 2}) == {
        "min_pt": 170.0, "lumi_fb": 2.0}
    with pytest.raises(ConfigError, match=r"abcd_variable='dphi'.*'deta_jj' or 'met_over_mt'"):
        resolve("svj", "abcd_variable=dphi")
    with pytest.raises(ConfigError, match="min_pt='high': expected float"):
        resolve("svj", "min_pt=high")
    with pytest.raises(UnknownNameError, match="tag_treshold"):
        resolve("svj", "tag_treshold=0.2")
