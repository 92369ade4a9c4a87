"""Recipe: VAE + DNN classifier on VBS event variables (MSE + KL + BCE).

The VAE part learns SM events; a DNN head on the standardized inputs, the latent mean and the
VAE losses learns SM (label 0) vs BSM (label 1, the datasets with ``is_signal``), classes
balanced by weight. Both need labelled BSM events, so every signal dataset is split into
train/validation/test as well. Metrics on the test splits: AUC and σ = |BSM − SM|/√SM at
the best cut, for the classifier probability and for the VAE score alone.
``coffea-ad train vae_dnn --fileset F --out models/vae_dnn``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.errors import InvalidArgumentError
from coffea_ad.inference.contract import InputSpec, ModelContract, OutputSpec
from coffea_ad.nn import recipe
from coffea_ad.nn.data import event_rows, load_fileset, load_rows
from coffea_ad.nn.export import DEFAULT_OPSET
from coffea_ad.nn.fit import fit, predict
from coffea_ad.nn.scaling import standardization
from coffea_ad.training.vae import VBS_FEATURES, significance_table

__all__ = ["CONFIG", "run"]

CONFIG: dict[str, Any] = {
    "features": VBS_FEATURES,
    "jets": "Jet",
    "require": "n_leptons",
    "hidden": [32, 16],
    "latent": 4,
    "beta": 1.0,
    "classifier": [32, 32],
    "alpha": 1.0,            # weight of the BCE term
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
    "lumi_fb": 300.0,
    "threads": 1,
}


def run(config: dict[str, Any] | None, fileset: dict | str | Path,
        out: str | Path) -> dict[str, Any]:
    """Train, evaluate and export the VAE + DNN; see :data:`CONFIG`."""
    import torch

    from coffea_ad.nn.vae import VAEClassifier

    cfg = recipe.resolve_config(CONFIG, config, recipe="vae_dnn")
    fs = load_fileset(fileset)
    train_ds, signals, _ = recipe.dataset_roles(fs, cfg["train_datasets"])
    if not signals:
        raise InvalidArgumentError(f"vae_dnn needs labelled BSM events: no dataset of {list(fs)} has "
                         f"metadata is_signal true")
    tables = load_rows(fs, event_rows, datasets=train_ds + signals, names=cfg["features"],
                       kind="vbs", jets=cfg["jets"], require=cfg["require"])
    sm = recipe.split_rows(recipe.merge_rows(tables, train_ds), cfg)
    bsm = {n: recipe.split_rows(tables[n], cfg) for n in signals}

    def stack(which: str):
        x = np.concatenate([sm.part(which)] + [b.part(which) for b in bsm.values()])
        y = np.concatenate([np.zeros(len(getattr(sm, which)), np.float32)]
                           + [np.ones(len(getattr(b, which)), np.float32) for b in bsm.values()])
        # balance the classes: each sums to half the total weight
        w = np.where(y == 1, len(y) / (2 * max(y.sum(), 1)), len(y) / (2 * max((1 - y).sum(), 1)))
        return x, y, w.astype(np.float32)

    x_tr, y_tr, w_tr = stack("train")
    x_va, y_va, w_va = stack("val")
    centre, scale = standardization(sm.part("train"))  # the VAE standardizes on SM
    torch.manual_seed(cfg["seed"])
    model = VAEClassifier(len(cfg["features"]), hidden=cfg["hidden"], latent=cfg["latent"],
                          beta=cfg["beta"], classifier=cfg["classifier"], alpha=cfg["alpha"],
                          activation=cfg["activation"], centre=centre, scale=scale)
    history = fit(model, [x_tr, y_tr], [x_va, y_va], train_weights=w_tr, val_weights=w_va,
                  epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                  patience=cfg["patience"], lr_patience=cfg["lr_patience"], seed=cfg["seed"],
                  threads=cfg["threads"])
    sm_prob, sm_vae = predict(model, [sm.part("test")])[:2]
    sig_out = {n: predict(model, [b.part("test")])[:2] for n, b in bsm.items()}
    test_rows = {n: ({"weight": b.part("test", "weight")}, cfg["test_fraction"])
                 for n, b in bsm.items()}
    metrics = {
        "auc": recipe.auc_table(sm_prob, None, {n: (o[0], None) for n, o in sig_out.items()}),
        "auc_vae_only": recipe.auc_table(sm_vae, None,
                                         {n: (o[1], None) for n, o in sig_out.items()}),
        "significance": significance_table(fs, sm, sm_prob, test_rows,
                                           {n: o[0] for n, o in sig_out.items()}, cfg, train_ds),
        "significance_vae_only": significance_table(
            fs, sm, sm_vae, test_rows, {n: o[1] for n, o in sig_out.items()}, cfg, train_ds),
        "lumi_fb": cfg["lumi_fb"],
    }
    n_feat = len(cfg["features"])
    contract = ModelContract(
        name="vae_dnn", kind="vae_classifier", level="event", jets=None,
        inputs=[InputSpec("features", list(cfg["features"]), [n_feat], scaling="in_graph")],
        outputs=[OutputSpec("probability", "score: BSM probability of the DNN head"),
                 OutputSpec("vae_score", "VAE loss MSE + beta KL (latent = posterior mean)"),
                 OutputSpec("reconstruction", "reconstructed features, raw units", [n_feat]),
                 OutputSpec("latent_mean", "posterior mean", [cfg["latent"]])],
        score="probability", opset=DEFAULT_OPSET,
        description=(f"VAE + DNN classifier on VBS event variables: SM {', '.join(train_ds)} "
                     f"vs BSM {', '.join(signals)}."),
        training={"datasets": train_ds, "signal_datasets": signals, "fileset_datasets": list(fs),
                  "n_events": {"sm_train": len(sm.train),
                               "bsm_train": {n: len(b.train) for n, b in bsm.items()}},
                  "selection": {"jets": cfg["jets"], "require": cfg["require"]},
                  "split": {"seed": cfg["seed"], "val_fraction": cfg["val_fraction"],
                            "test_fraction": cfg["test_fraction"]}},
        metrics=metrics,
    )
    paths = recipe.finish(model, contract, out=out, example={"features": x_tr[:16]},
                          check={"features": x_va[:37]}, config=cfg, history=history,
                          training_files=train_ds + signals, fileset=fs)
    return {**metrics, "n_train": len(x_tr), "epochs": len(history.train_loss),
            "onnx": str(paths["onnx"])}
