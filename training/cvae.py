"""Recipe: conditional VAE on dijet substructure conditioned on m_jj (LHC-Olympics style).

Inputs per event: mass, τ21, τ32 of the two leading AK8 jets (p_T order), condition m_jj.
Trained on the m_jj sidebands (outside the signal region ``[sr_low, sr_high]``) of the
background datasets, so the decoder can sample a background template inside the signal region
(:meth:`coffea_ad.nn.cvae.ConditionalVAE.sample`; exported as ``NAME_sampler.onnx``).
``beta`` sets the decoder's observation noise (the loss is the ELBO of a Gaussian of variance
F beta / 2 in standardized units, F features): 0.5 with 6 features blurs the template; with
a small ``beta`` use ``prior_components`` (the sampler then draws the latent from a Gaussian
mixture fitted to the encoded training rows, inside its ONNX graph, fed by one more
standard-normal noise column).
Metrics in the signal region, held-out background vs each signal: AUC and max SIC of the
cVAE score. ``coffea-ad train cvae --fileset F --out models/cvae``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.inference.contract import InputSpec, ModelContract, OutputSpec
from coffea_ad.nn import recipe
from coffea_ad.nn.data import dijet_rows, load_fileset, load_rows
from coffea_ad.nn.export import DEFAULT_OPSET, export_onnx, verify_onnx
from coffea_ad.nn.fit import fit, predict
from coffea_ad.nn.scaling import standardization

__all__ = ["CONFIG", "run"]

CONFIG: dict[str, Any] = {
    "jet_features": ["mass", "tau21", "tau32"],
    "jets": "FatJet",
    "min_pt": 300.0,
    "sr_low": 3300.0,        # signal region in m_jj, GeV
    "sr_high": 3700.0,
    "hidden": [64, 64],
    "latent": 4,
    "beta": 0.5,
    # latent prior of the sampler: 0 = N(0, 1); K > 0 = a K-component Gaussian mixture fitted
    # to the encoded training rows (needed at small beta, where they no longer fill N(0, 1))
    "prior_components": 0,
    "prior_rows": 100_000,
    # model the features in a logit box (the training range widened by 2 % on each side)
    # instead of raw standardized units: the template then respects m > 0 and τ in (0, 1)
    "logit": False,
    "activation": "elu",
    "epochs": 100,
    "batch_size": 256,
    "lr": 1e-3,
    "patience": 10,
    "lr_patience": 4,
    "seed": 0,
    "train_datasets": None,
    "val_fraction": 0.2,
    "test_fraction": 0.2,
    "min_background_sic": 20,  # max SIC only over cuts keeping this many background events
    "threads": 1,
}


def feature_names(jet_features: list[str]) -> list[str]:
    """``["mass", "tau21"]`` -> ``["mass_j1", "tau21_j1", "mass_j2", "tau21_j2"]``."""
    return [f"{n}_j{i}" for i in (1, 2) for n in jet_features]


def run(config: dict[str, Any] | None, fileset: dict | str | Path,
        out: str | Path) -> dict[str, Any]:
    """Train in the sidebands, evaluate in the signal region, export model and sampler."""
    import torch

    from coffea_ad.nn.cvae import ConditionalVAE, CVAESampler, fit_latent_prior, logit_box
    from coffea_ad.stats.roc import max_sic

    cfg = recipe.resolve_config(CONFIG, config, recipe="cvae")
    fs = load_fileset(fileset)
    train_ds, signals, _ = recipe.dataset_roles(fs, cfg["train_datasets"])
    tables = load_rows(fs, dijet_rows, datasets=train_ds + signals,
                       names=cfg["jet_features"], jets=cfg["jets"], min_pt=cfg["min_pt"])
    split = recipe.split_rows(recipe.merge_rows(tables, train_ds), cfg)
    mjj = split.rows["mjj"]
    in_sr = (mjj >= cfg["sr_low"]) & (mjj <= cfg["sr_high"])
    tr = split.train[~in_sr[split.train]]
    va = split.val[~in_sr[split.val]]
    x, c = split.rows["x"], split.rows["mjj"][:, None]
    box = {}
    if cfg["logit"]:
        low, high, y_tr = logit_box(x[tr])
        centre, scale = standardization(y_tr)
        box = {"low": low, "high": high}
    else:
        centre, scale = standardization(x[tr])
    log_c = np.log(np.clip(c[tr], 1.0, None))
    torch.manual_seed(cfg["seed"])
    model = ConditionalVAE(x.shape[1], 1, hidden=cfg["hidden"], latent=cfg["latent"],
                           beta=cfg["beta"], activation=cfg["activation"], centre=centre,
                           scale=scale, cond_centre=log_c.mean(0), cond_scale=log_c.std(0) + 1e-6,
                           **box)
    history = fit(model, [x[tr], c[tr]], [x[va], c[va]], epochs=cfg["epochs"],
                  batch_size=cfg["batch_size"], lr=cfg["lr"], patience=cfg["patience"],
                  lr_patience=cfg["lr_patience"], seed=cfg["seed"], threads=cfg["threads"])
    noise = model.calibrate_noise(x[tr], c[tr])
    te_sr = split.test[in_sr[split.test]]
    bkg_scores = predict(model, [x[te_sr], c[te_sr]])[0] if len(te_sr) else np.zeros(0)
    aucs, sics = {}, {}
    for name in signals:
        t = tables.get(name)
        if t is None:
            continue
        sr = (t["mjj"] >= cfg["sr_low"]) & (t["mjj"] <= cfg["sr_high"])
        if not sr.any() or len(bkg_scores) == 0:
            continue
        s = predict(model, [t["x"][sr], t["mjj"][sr, None]])[0]
        aucs.update(recipe.auc_table(bkg_scores, None, {name: (s, None)}))
        try:
            sics[name] = round(max_sic(bkg_scores, s, max_rel_bkg_uncertainty=(
                cfg["min_background_sic"] ** -0.5)).sic, 3)
        except ValueError:  # too little background in the SR for a SIC
            sics[name] = None
    names = feature_names(cfg["jet_features"])
    common = {"kind": "cvae", "level": "event", "jets": None, "opset": DEFAULT_OPSET,
                  "training": {"datasets": train_ds, "fileset_datasets": list(fs),
                            "region": "sidebands: m_jj outside "
                                      f"[{cfg['sr_low']}, {cfg['sr_high']}]",
                            "n_events": {"train": len(tr), "val": len(va),
                                         "test_sr": len(te_sr)},
                            "selection": {"jets": cfg["jets"], "min_pt": cfg["min_pt"],
                                          "jet_order": "p_T"},
                            **({"logit_box": {"low": np.round(box["low"], 6).tolist(),
                                              "high": np.round(box["high"], 6).tolist()}}
                               if box else {})},
                  "metrics": {"auc_sr": aucs, "max_sic_sr": sics}}
    condition = InputSpec("condition", ["mjj"], [1], scaling="in_graph")
    contract = ModelContract(
        name="cvae",
        inputs=[InputSpec("features", names, [len(names)], scaling="in_graph"), condition],
        outputs=[OutputSpec("score", "score: MSE + beta KL given m_jj"
                            + (" (standardized logit features)" if cfg["logit"] else "")),
                 OutputSpec("reconstruction", "reconstructed features, raw units", [len(names)])],
        score="score", description="Conditional VAE (condition m_jj) trained in the sidebands.",
        **common)
    paths = recipe.finish(model, contract, out=out,
                          example={"features": x[tr][:16], "condition": c[tr][:16]},
                          check={"features": x[va][:37], "condition": c[va][:37]},
                          config=cfg, history=history, training_files=train_ds, fileset=fs)
    # the sampler: decoder alone, noise drawn by the caller
    k = int(cfg["prior_components"])
    prior = (fit_latent_prior(model, x[tr], c[tr], k, seed=cfg["seed"],
                              max_rows=int(cfg["prior_rows"])) if k > 0 else None)
    sampler = CVAESampler(model, prior)
    noise_names = [f"z{i}" for i in range(cfg["latent"])] + [f"eps_{n}" for n in names]
    prior_text = "latent z ~ N(0, 1)"
    if k > 0:
        noise_names.append("component")
        prior_text = (f"latent z = means[j] + L[j] z from a {k}-component Gaussian mixture "
                      "fitted to the encoded training rows, j picked by Phi(component) against "
                      f"the cumulative weights {np.round(np.cumsum(prior[0]), 4).tolist()}")
    spath = paths["onnx"].with_name(paths["onnx"].stem + "_sampler.onnx")
    scontract = ModelContract(
        name=spath.stem,
        inputs=[InputSpec("noise", noise_names, [len(noise_names)]), condition],
        outputs=[OutputSpec("features", "sampled features (decoder mean), raw units",
                            [len(names)])],
        score="features", description="Decoder of the cVAE: background template given m_jj; "
        f"feed standard-normal noise (columns {noise_names}; {prior_text}). Sampled feature "
        f"order: {names}; observation noise scales (standardized) {noise.tolist()}", **common)
    rng = np.random.default_rng(cfg["seed"])
    eps = rng.normal(size=(37, len(noise_names))).astype(np.float32)
    export_onnx(sampler, {"noise": eps[:16], "condition": c[tr][:16]}, spath,
                output_names=sampler.output_names, contract=scontract)
    verify_onnx(sampler, spath, {"noise": eps, "condition": c[va][:37]})
    return {"auc_sr": aucs, "max_sic_sr": sics, "n_train": len(tr),
            "epochs": len(history.train_loss), "onnx": str(paths["onnx"]),
            "sampler": str(spath)}
