"""Recipe: VAE on event-level VBS variables (same-sign WW + 2 jets, EFT-like searches).

MSE + beta KL on standardized lepton/jet/MET variables of
:func:`coffea_ad.features.vbs_variables`; trained on SM events only; the score is the
reconstruction, KL or combined loss. Metrics: AUC and the significance
``σ = |BSM − SM| / √SM`` at the best cut (yields from the fileset's cross sections at
``lumi_fb``). ``coffea-ad train vae --fileset F --out models/vae``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.inference.contract import InputSpec, ModelContract, OutputSpec
from coffea_ad.nn import recipe
from coffea_ad.nn.data import event_rows, load_fileset, load_rows
from coffea_ad.nn.export import DEFAULT_OPSET
from coffea_ad.nn.fit import fit, predict
from coffea_ad.nn.scaling import standardization
from coffea_ad.stats.significance import significance_scan

__all__ = ["CONFIG", "VBS_FEATURES", "run"]

VBS_FEATURES = ["lep1_pt", "lep1_eta", "lep2_pt", "lep2_eta", "zep1", "zep2", "mjj", "deta_jj",
                "dphi_jj", "mll", "met", "jet1_pt", "jet2_pt"]

CONFIG: dict[str, Any] = {
    "features": VBS_FEATURES,
    "jets": "Jet",
    "require": "n_leptons",  # keep events with >= 2 leptons (the same-sign pair); "vbs": the
    #                          vbs processor's preselection (cuts: vbs_cuts)
    "vbs_cuts": {},          # require="vbs" only: overrides of features.VBS_CUTS
    "hidden": [32, 16],
    "latent": 4,
    "beta": 1.0,
    "score": "combined",     # "reconstruction" | "kl" | "combined"
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
    "lumi_fb": 300.0,        # luminosity of the significance, fb^-1
    "threads": 1,
}


def significance_table(fs, split, sm_scores, signal_rows, signal_scores, cfg, train_ds):
    """σ = |BSM − SM|/√SM at the best cut of each signal (BSM = SM + signal yields)."""
    names = list(train_ds)
    w_sm = np.concatenate([
        recipe.luminosity_weights(fs, n, split.part("test", "weight")[
            split.part("test", "dataset") == i], lumi_fb=cfg["lumi_fb"],
            fraction=cfg["test_fraction"]) for i, n in enumerate(names)])
    order = np.concatenate([np.flatnonzero(split.part("test", "dataset") == i)
                            for i in range(len(names))])
    sm = sm_scores[order]
    out = {}
    for name, (rows, fraction) in signal_rows.items():
        w_sig = recipe.luminosity_weights(fs, name, rows["weight"], lumi_fb=cfg["lumi_fb"],
                                          fraction=fraction)
        scan = significance_scan(sm, np.concatenate([sm, signal_scores[name]]), weights_sm=w_sm,
                                 weights_bsm=np.concatenate([w_sm, w_sig]), min_sm=1.0)
        out[name] = {"sigma": round(scan.best_sigma, 3), "cut": scan.best_cut,
                     "n_sm": float(scan.n_sm[scan.best_index]),
                     "n_bsm": float(scan.n_bsm[scan.best_index])}
    return out


def run(config: dict[str, Any] | None, fileset: dict | str | Path,
        out: str | Path) -> dict[str, Any]:
    """Train, evaluate and export the VAE; see :data:`CONFIG` and the module docstring."""
    import torch

    from coffea_ad.nn.vae import VAE

    cfg = recipe.resolve_config(CONFIG, config, recipe="vae")
    fs = load_fileset(fileset)
    train_ds, signals, others = recipe.dataset_roles(fs, cfg["train_datasets"])
    tables = load_rows(fs, event_rows, datasets=train_ds + signals + others,
                       names=cfg["features"], kind="vbs", jets=cfg["jets"],
                       require=cfg["require"], cuts=cfg["vbs_cuts"])
    split = recipe.split_rows(recipe.merge_rows(tables, train_ds), cfg)
    centre, scale = standardization(split.part("train"))
    torch.manual_seed(cfg["seed"])
    model = VAE(len(cfg["features"]), hidden=cfg["hidden"], latent=cfg["latent"],
                beta=cfg["beta"], score=cfg["score"], activation=cfg["activation"],
                centre=centre, scale=scale)
    history = fit(model, [split.part("train")], [split.part("val")], epochs=cfg["epochs"],
                  batch_size=cfg["batch_size"], lr=cfg["lr"], patience=cfg["patience"],
                  lr_patience=cfg["lr_patience"], seed=cfg["seed"], threads=cfg["threads"])
    sm_scores = predict(model, [split.part("test")])[0]
    scores = {n: predict(model, [tables[n]["x"]])[0] for n in signals + others if n in tables}
    aucs = recipe.auc_table(sm_scores, None, {n: (scores[n], None) for n in signals if n in scores})
    sig = significance_table(fs, split, sm_scores, {n: (tables[n], 1.0) for n in signals
                                                    if n in tables}, scores, cfg, train_ds)
    n_feat = len(cfg["features"])
    contract = ModelContract(
        name="vae", kind="vae", level="event", jets=None,
        inputs=[InputSpec("features", list(cfg["features"]), [n_feat], scaling="in_graph")],
        outputs=[OutputSpec("score", f"score: {cfg['score']} VAE loss (MSE + beta KL terms)"),
                 OutputSpec("reconstruction", "reconstructed features, raw units", [n_feat]),
                 OutputSpec("latent_mean", "posterior mean", [cfg["latent"]]),
                 OutputSpec("latent_logvar", "posterior log-variance", [cfg["latent"]])],
        score="score", opset=DEFAULT_OPSET,
        description=f"VAE on VBS event variables trained on SM events of {', '.join(train_ds)}.",
        training={"datasets": train_ds, "fileset_datasets": list(fs),
                  "n_events": {"train": len(split.train), "val": len(split.val),
                               "test": len(split.test)},
                  "selection": {"jets": cfg["jets"], "require": cfg["require"],
                                "vbs_cuts": cfg["vbs_cuts"]},
                  "split": {"seed": cfg["seed"], "val_fraction": cfg["val_fraction"],
                            "test_fraction": cfg["test_fraction"]}},
        metrics={"auc": aucs, "significance": sig, "lumi_fb": cfg["lumi_fb"]},
    )
    paths = recipe.finish(model, contract, out=out, example={"features": split.part("train")[:16]},
                          check={"features": split.part("test")[:37]}, config=cfg,
                          history=history, training_files=train_ds, fileset=fs)
    return {"auc": aucs, "significance": sig, "n_train": len(split.train),
            "epochs": len(history.train_loss), "onnx": str(paths["onnx"])}
