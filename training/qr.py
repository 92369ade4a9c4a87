"""Recipe: quantile regression of a jet model's dijet score versus m_jj (decorrelated cuts).

Scores the two leading jets of every background event with an exported jet-level model
(``model``), combines them (``combine``: min/max/sum) and fits the quantiles ``quantiles`` of
that score as smooth functions of m_jj with the pinball loss. Cutting at ``q_tau(m_jj)`` keeps
a fraction ``1 - tau`` of the background at every m_jj, so the selected m_jj spectrum keeps
the smooth shape a bump hunt fits. Metrics: background efficiency of each quantile cut on the
held-out events, overall and its largest deviation over m_jj bins; signal efficiencies.
``coffea-ad train qr --fileset F --set model=models/dense_ae.onnx --out models/qr``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.errors import InvalidArgumentError
from coffea_ad.inference.contract import InputSpec, ModelContract, OutputSpec
from coffea_ad.nn import recipe
from coffea_ad.nn.data import dijet_score_rows, load_fileset, load_rows
from coffea_ad.nn.export import DEFAULT_OPSET
from coffea_ad.nn.fit import fit, predict

__all__ = ["CONFIG", "run"]

CONFIG: dict[str, Any] = {
    "model": None,           # path of the jet-level ONNX model whose score is regressed
    "combine": "min",
    "min_pt": 300.0,
    "quantiles": [0.5, 0.7, 0.9, 0.95],
    "hidden": [32, 32],
    "activation": "elu",
    "epochs": 100,
    "batch_size": 512,
    "lr": 3e-3,
    "patience": 10,
    "lr_patience": 4,
    "seed": 0,
    "train_datasets": None,
    "val_fraction": 0.2,
    "test_fraction": 0.3,
    "mjj_bins": 5,           # m_jj quantile bins for the flatness metric
    "threads": 1,
}


def run(config: dict[str, Any] | None, fileset: dict | str | Path,
        out: str | Path) -> dict[str, Any]:
    """Score, fit the quantiles on background, measure their flatness, export."""
    import torch

    from coffea_ad.inference import OnnxScorer
    from coffea_ad.nn.quantile import QuantileRegressor

    cfg = recipe.resolve_config(CONFIG, config, recipe="qr")
    if not cfg["model"]:
        raise InvalidArgumentError("qr: expected config 'model' (path of a jet-level .onnx), found none")
    fs = load_fileset(fileset)
    train_ds, signals, _ = recipe.dataset_roles(fs, cfg["train_datasets"])
    scorer = OnnxScorer(cfg["model"], intra_op_threads=cfg["threads"])
    tables = load_rows(fs, dijet_score_rows, datasets=train_ds + signals, scorer=scorer,
                       combine=cfg["combine"], min_pt=cfg["min_pt"])
    split = recipe.split_rows(recipe.merge_rows(tables, train_ds), cfg)
    m, y = split.rows["mjj"][:, None], split.rows["score"]
    lm = np.log(np.clip(m[split.train], 1.0, None))
    torch.manual_seed(cfg["seed"])
    model = QuantileRegressor(1, quantiles=cfg["quantiles"], hidden=cfg["hidden"],
                              activation=cfg["activation"], centre=lm.mean(0),
                              scale=lm.std(0) + 1e-6, target_centre=float(y[split.train].mean()),
                              target_scale=float(y[split.train].std() + 1e-6))
    history = fit(model, [m[split.train], y[split.train]], [m[split.val], y[split.val]],
                  epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                  patience=cfg["patience"], lr_patience=cfg["lr_patience"], seed=cfg["seed"],
                  threads=cfg["threads"])
    te = split.test
    q = predict(model, [m[te]])[0]
    passed = y[te, None] > q  # [n_test, n_quantiles]
    edges = np.quantile(m[te, 0], np.linspace(0, 1, cfg["mjj_bins"] + 1))
    which = np.clip(np.searchsorted(edges, m[te, 0], side="right") - 1, 0, cfg["mjj_bins"] - 1)
    per_bin = np.array([passed[which == b].mean(0) for b in range(cfg["mjj_bins"])])
    target = 1.0 - np.asarray(cfg["quantiles"])
    metrics: dict[str, Any] = {
        "background_efficiency": dict(zip(map(str, cfg["quantiles"]),
                                          np.round(passed.mean(0), 4).tolist(), strict=True)),
        "target_efficiency": dict(zip(map(str, cfg["quantiles"]), np.round(target, 4).tolist(),
                                      strict=True)),
        "max_abs_deviation_over_mjj_bins": dict(zip(
            map(str, cfg["quantiles"]), np.round(np.abs(per_bin - target).max(0), 4).tolist(),
            strict=True)),
        "signal_efficiency": {},
    }
    for name in signals:
        if name in tables and len(tables[name]["score"]):
            qs = predict(model, [tables[name]["mjj"][:, None]])[0]
            eff = (tables[name]["score"][:, None] > qs).mean(0)
            metrics["signal_efficiency"][name] = dict(zip(map(str, cfg["quantiles"]),
                                                          np.round(eff, 4).tolist(), strict=True))
    contract = ModelContract(
        name="qr", kind="quantile_regression", level="event", jets=None,
        inputs=[InputSpec("inputs", ["mjj"], [1], scaling="in_graph")],
        outputs=[OutputSpec("quantiles", f"score: quantiles {cfg['quantiles']} of the "
                            f"{cfg['combine']}-combined score at this m_jj",
                            [len(cfg["quantiles"])])],
        score="quantiles", opset=DEFAULT_OPSET,
        description=f"Quantile regression of the {cfg['combine']} dijet score of "
                    f"{Path(cfg['model']).name} versus m_jj.",
        training={"datasets": train_ds, "fileset_datasets": list(fs),
                  "scored_with": {"model": str(cfg["model"]),
                                  "contract_name": scorer.contract.name},
                  "n_events": {"train": len(split.train), "val": len(split.val),
                               "test": len(te)}},
        metrics=metrics,
        extra={"quantiles": list(cfg["quantiles"]), "combine": cfg["combine"]},
    )
    paths = recipe.finish(model, contract, out=out, example={"inputs": m[split.train][:16]},
                          check={"inputs": m[split.val][:37]}, config=cfg, history=history,
                          training_files=train_ds, fileset=fs)
    return {**metrics, "n_train": len(split.train), "onnx": str(paths["onnx"])}
