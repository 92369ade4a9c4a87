"""Recipe: baselines on jet substructure — PCA reconstruction error (exported) and a
supervised boosted-tree classifier (reference AUC only).

Same inputs, selection and split as ``dense_ae``, so the AUCs compare directly. The PCA keeps
``n_components`` principal axes of the standardized background; its score is the mean squared
distance of a jet from that subspace. The boosted trees (scikit-learn HistGradientBoosting)
train on background train jets vs half of each signal's jets and are tested on the other
half; they are not exported (ONNX export of sklearn trees needs ``skl2onnx``).
``coffea-ad train pca --fileset F --out models/pca``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.inference.contract import InputSpec, ModelContract, OutputSpec
from coffea_ad.nn import recipe
from coffea_ad.nn.data import concat_tables, load_fileset, load_jet_tables, split_indices
from coffea_ad.nn.export import DEFAULT_OPSET
from coffea_ad.nn.fit import predict
from coffea_ad.training.dense_ae import CONFIG as DENSE_CONFIG

__all__ = ["CONFIG", "run"]

CONFIG: dict[str, Any] = {
    **{k: DENSE_CONFIG[k] for k in ("features", "jets", "max_jets", "min_pt", "seed",
                                     "train_datasets", "val_fraction", "test_fraction")},
    "n_components": 3,
    "bdt": True,             # also measure the supervised boosted-tree reference
    "bdt_max_iter": 200,
}


def run(config: dict[str, Any] | None, fileset: dict | str | Path,
        out: str | Path) -> dict[str, Any]:
    """Fit PCA (and the BDT reference), evaluate, export the PCA."""
    from coffea_ad.nn.baselines import fit_boosted_trees, fit_pca
    from coffea_ad.stats.roc import auc

    cfg = recipe.resolve_config(CONFIG, config, recipe="pca")
    fs = load_fileset(fileset)
    train_ds, signals, others = recipe.dataset_roles(fs, cfg["train_datasets"])
    tables = load_jet_tables(fs, cfg["features"], datasets=train_ds + signals + others,
                             jets=cfg["jets"], max_jets=cfg["max_jets"], min_pt=cfg["min_pt"])
    bkg = concat_tables([tables[n] for n in train_ds])
    tr, va, te = split_indices(len(bkg), val_fraction=cfg["val_fraction"],
                               test_fraction=cfg["test_fraction"], seed=cfg["seed"],
                               groups=bkg.event)
    model = fit_pca(bkg.x[tr], n_components=cfg["n_components"], seed=cfg["seed"])
    test_scores = predict(model, [bkg.x[te]])[0]
    scored = {n: (predict(model, [tables[n].x])[0], None) for n in signals + others
              if len(tables[n])}
    aucs = recipe.auc_table(test_scores, None, {n: v for n, v in scored.items() if n in signals})
    metrics: dict[str, Any] = {"auc": aucs, "auc_background": recipe.auc_table(
        test_scores, None, {n: v for n, v in scored.items() if n in others})}
    if cfg["bdt"]:
        metrics["bdt_auc"] = {}
        rng = np.random.default_rng(cfg["seed"])
        for name in signals:
            sig = tables[name].x
            if len(sig) < 4 or len(te) == 0:
                continue
            half = rng.permutation(len(sig)) < len(sig) // 2
            clf = fit_boosted_trees(bkg.x[tr], sig[half], seed=cfg["seed"],
                                    max_iter=cfg["bdt_max_iter"])
            metrics["bdt_auc"][name] = round(auc(clf.predict_proba(bkg.x[te])[:, 1],
                                                 clf.predict_proba(sig[~half])[:, 1]), 4)
    n_feat = len(cfg["features"])
    contract = ModelContract(
        name="pca", kind="pca", level="jet", jets=cfg["jets"],
        inputs=[InputSpec("features", list(cfg["features"]), [n_feat], scaling="in_graph")],
        outputs=[OutputSpec("loss", "score: mean squared distance of the standardized jet "
                            f"from the {cfg['n_components']} leading principal axes"),
                 OutputSpec("reconstruction", "projection, raw units", [n_feat])],
        score="loss", opset=DEFAULT_OPSET,
        description=f"PCA reconstruction-error baseline ({cfg['n_components']} components).",
        training={"datasets": train_ds, "fileset_datasets": list(fs),
                  "selection": {"jets": cfg["jets"], "max_jets": cfg["max_jets"],
                                "min_pt": cfg["min_pt"]},
                  "n_jets": {"train": len(tr), "val": len(va), "test": len(te)},
                  "split": {"seed": cfg["seed"], "val_fraction": cfg["val_fraction"],
                            "test_fraction": cfg["test_fraction"], "grouped_by": "event"}},
        metrics=metrics,
    )
    paths = recipe.finish(model, contract, out=out, example={"features": bkg.x[tr][:16]},
                          check={"features": bkg.x[va][:37]}, config=cfg,
                          training_files=train_ds, fileset=fs)
    return {**metrics, "n_train": len(tr), "onnx": str(paths["onnx"])}
