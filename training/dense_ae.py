"""Recipe: dense autoencoder on AK8 jet substructure (semivisible-jet search).

(10, 10)-6 ELU autoencoder with MAE loss on standardized η, φ, m, p_TD, axis major/minor
(Canelli et al., arXiv:2112.02864), trained on background jets only; the per-jet loss is the
anomaly score. ``coffea-ad train dense_ae --fileset F --out models/dense_ae``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.inference.contract import InputSpec, ModelContract, OutputSpec
from coffea_ad.nn import recipe
from coffea_ad.nn.data import concat_tables, load_fileset, load_jet_tables, split_indices
from coffea_ad.nn.export import DEFAULT_OPSET
from coffea_ad.nn.fit import fit, predict
from coffea_ad.nn.scaling import standardization
from coffea_ad.stats.decorrelation import distance_correlation as stats_dcorr
from coffea_ad.stats.roc import auc

__all__ = ["CONFIG", "run"]

CONFIG: dict[str, Any] = {
    "features": ["eta", "phi", "mass", "ptd", "axis_major", "axis_minor"],
    "jets": "FatJet",
    "max_jets": 2,          # leading jets per event
    "min_pt": 200.0,        # GeV
    "hidden": [10, 10],
    "latent": 6,
    "activation": "elu",
    "loss": "mae",
    "epochs": 100,
    "batch_size": 256,
    "lr": 1e-3,
    "patience": 10,
    "lr_patience": 4,
    "seed": 0,
    "train_datasets": None,  # None: the datasets whose metadata is_signal is false
    "val_fraction": 0.2,
    "test_fraction": 0.2,
    "pt_flatten": False,     # weight training jets to a flat p_T spectrum
    "gen_weights": True,     # weight jets by the event's genWeight
    "disco": 0.0,            # λ of the DisCo penalty dCorr²(loss, disco_variable); 0 = off
    "disco_variable": "mt",  # event variable (coffea_ad.features.event_variables) to decorrelate
    "threads": 1,
    # feature sources per jet collection the model may also read (e.g. TreeMaker JetsAK8
    # branches), and the definitional differences to the training features (contract fields)
    "sources": {},
    "source_notes": {},
}


def run(config: dict[str, Any] | None, fileset: dict | str | Path,
        out: str | Path) -> dict[str, Any]:
    """Train, evaluate and export the dense AE.

    Args:
        config: overrides of :data:`CONFIG` (an unknown key raises UnknownNameError).
        fileset: coffea fileset (dict or JSON path).
        out: ``models/NAME``: writes NAME.onnx, NAME.json, NAME.md, NAME_loss.png.

    Returns:
        ``{"auc": {signal: AUC}, "auc_background": {...}, "n_train", "n_val", "n_test",
        "onnx": path, ...}``.
    """
    import torch

    cfg = recipe.resolve_config(CONFIG, config, recipe="dense_ae")
    fs = load_fileset(fileset)
    train_ds, signals, others = recipe.dataset_roles(fs, cfg["train_datasets"])
    tables = load_jet_tables(fs, cfg["features"], datasets=train_ds + signals + others,
                             jets=cfg["jets"], max_jets=cfg["max_jets"], min_pt=cfg["min_pt"],
                             event_columns=[cfg["disco_variable"]])
    bkg = concat_tables([tables[n] for n in train_ds])
    tr, va, te = split_indices(len(bkg), val_fraction=cfg["val_fraction"],
                               test_fraction=cfg["test_fraction"], seed=cfg["seed"],
                               groups=bkg.event)
    w = bkg.weight.astype(np.float64) if cfg["gen_weights"] else np.ones(len(bkg))
    if cfg["pt_flatten"]:
        w_tr = recipe.flat_pt_weights(bkg.pt[tr], base=w[tr])
        w_va = recipe.flat_pt_weights(bkg.pt[va], base=w[va])
    else:
        w_tr, w_va = w[tr], w[va]
    centre, scale = standardization(bkg.x[tr], weights=w_tr)

    from coffea_ad.nn.dense import DenseAutoencoder
    from coffea_ad.nn.losses import distance_correlation

    torch.manual_seed(cfg["seed"])
    model = DenseAutoencoder(len(cfg["features"]), hidden=cfg["hidden"], latent=cfg["latent"],
                             activation=cfg["activation"], loss=cfg["loss"],
                             centre=centre, scale=scale)
    decor = bkg.extra[cfg["disco_variable"]]
    penalty = None
    if cfg["disco"]:
        def penalty(per_row, aux, w):  # DisCo, Kasieczka & Shih arXiv:2001.05310
            return cfg["disco"] * distance_correlation(per_row, aux[0], weights=w)
    history = fit(model, [bkg.x[tr]], [bkg.x[va]], train_weights=w_tr, val_weights=w_va,
                  epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                  patience=cfg["patience"], lr_patience=cfg["lr_patience"], seed=cfg["seed"],
                  threads=cfg["threads"], penalty=penalty, aux_train=[decor[tr]],
                  aux_val=[decor[va]])

    test_scores = predict(model, [bkg.x[te]])[0]
    # how much the score knows about m_T on held-out background (what DisCo minimizes)
    dcorr = (round(float(stats_dcorr(test_scores, decor[te])), 4) if len(te) > 2 else None)
    wb = bkg.weight[te] if cfg["gen_weights"] else None
    aucs, aucs_bkg = {}, {}
    for name in signals + others:
        t = tables[name]
        if len(t) == 0 or len(te) == 0:
            continue
        s = predict(model, [t.x])[0]
        value = auc(test_scores, s, weights_bkg=wb,
                    weights_sig=t.weight if cfg["gen_weights"] else None)
        (aucs if name in signals else aucs_bkg)[name] = round(value, 4)

    n_feat = len(cfg["features"])
    contract = ModelContract(
        name="dense_ae", kind="autoencoder", level="jet", jets=cfg["jets"],
        inputs=[InputSpec(name="features", features=list(cfg["features"]), shape=[n_feat],
                          scaling="in_graph")],
        outputs=[OutputSpec("loss", f"score: per-jet {cfg['loss'].upper()} reconstruction loss "
                            "on standardized features", []),
                 OutputSpec("reconstruction", "reconstructed features, raw units", [n_feat])],
        score="loss", opset=DEFAULT_OPSET,
        description=(f"Dense autoencoder {tuple(cfg['hidden'])}-{cfg['latent']} "
                     f"({cfg['activation']}, {cfg['loss']} loss) on jet substructure, trained on "
                     f"background jets of {', '.join(train_ds)}."),
        training={"datasets": train_ds, "fileset_datasets": list(fs),
                  "selection": {"jets": cfg["jets"], "max_jets": cfg["max_jets"],
                                "min_pt": cfg["min_pt"]},
                  "n_jets": {"train": len(tr), "val": len(va), "test": len(te)},
                  "split": {"seed": cfg["seed"], "val_fraction": cfg["val_fraction"],
                            "test_fraction": cfg["test_fraction"], "grouped_by": "event"},
                  "standardization": {"centre": centre.tolist(), "scale": scale.tolist()}},
        metrics={"auc": aucs, "auc_background": aucs_bkg,
                 f"distance_correlation_{cfg['disco_variable']}": dcorr,
                 "test_background_mean_loss": float(np.mean(test_scores)) if len(te) else None},
        sources={k: dict(v) for k, v in cfg["sources"].items()},
        source_notes=dict(cfg["source_notes"]),
    )
    paths = recipe.finish(model, contract, out=out, example={"features": bkg.x[tr][:16]},
                          check={"features": bkg.x[te][:37] if len(te) else bkg.x[:37]},
                          config=cfg, history=history, training_files=train_ds, fileset=fs)
    return {"auc": aucs, "auc_background": aucs_bkg, "n_train": len(tr), "n_val": len(va),
            "n_test": len(te), "epochs": len(history.train_loss),
            f"distance_correlation_{cfg['disco_variable']}": dcorr,
            "best_val_loss": history.best_val_loss, "onnx": str(paths["onnx"]),
            "contract": str(paths["contract"]), "card": str(paths["card"])}
