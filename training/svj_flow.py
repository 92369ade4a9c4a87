"""Recipe: p_T-conditioned normalizing flow on AK8 jet substructure (semivisible-jet tagger).

The score is ``-log p(x | log p_T)`` of QCD jets (:class:`coffea_ad.nn.jet_flow.SubstructureFlow`):
how unusual a jet's substructure x is for a QCD jet of the same p_T. The inputs are
scale-invariant substructure (ρ = ln(m_SD²/p_T²), p_TD, axes, girth, LHA, EFP1, C2, D2, τ21,
τ32, multiplicity); no φ, no η, no mass or p_T except as the condition. Trained on background
only. ``coffea-ad train svj_flow --fileset F --set train_datasets=qcd_train --out
models/svj_cflow``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.inference.contract import InputSpec, ModelContract, OutputSpec
from coffea_ad.nn import recipe
from coffea_ad.nn.data import concat_tables, load_fileset, load_jet_tables, split_indices
from coffea_ad.nn.export import DEFAULT_OPSET
from coffea_ad.stats.roc import auc

__all__ = ["CONFIG", "build_and_fit", "provenance", "run"]

CONFIG: dict[str, Any] = {
    "conditions": ["log_pt"],
    "inputs": ["rho", "ptd", "axis_major", "axis_minor", "girth", "lha", "efp1", "c2_b1",
               "d2_b1", "tau21", "tau32", "n_constituents"],
    # inputs to take the log of before standardizing: none by default. Measured on the study
    # samples, log-transforming the widths, EFP1, C2, D2 and the multiplicity compresses the
    # wide, many-constituent tail where semivisible jets sit and stretches the narrow QCD
    # tail: p_T-reweighted AUC at (3 TeV, 0.3) 0.59 with the logs, 0.70 without
    "log_inputs": [],
    "jets": "FatJet",
    "max_jets": 2,
    "min_pt": 200.0,
    "transforms": 4,
    "hidden": [64, 64],
    "epochs": 20,
    "batch_size": 512,
    "lr": 1e-3,
    "patience": 5,
    "lr_patience": 3,
    "seed": 0,
    "train_datasets": None,  # None: the datasets whose metadata is_signal is false
    "eval_datasets": None,   # datasets scored for the card's AUC (None: all the others)
    "val_fraction": 0.2,
    "test_fraction": 0.2,
    "threads": 1,
}


def build_and_fit(x_train: np.ndarray, x_val: np.ndarray, cfg: Mapping[str, Any]):
    """Build the flow with centre/scale from ``x_train`` and fit it.

    ``x_*`` are raw ``[rows, conditions + inputs]`` in the contract's order. Unweighted: the
    p̂_T-flattened training QCD covers the jet-p_T range evenly, which is what a conditional
    density needs (a physically weighted sample would leave the TeV jets of heavy signals
    with a few effective events).

    Returns:
        ``(model, history)``.
    """
    import torch

    from coffea_ad.nn.fit import fit
    from coffea_ad.nn.jet_flow import SubstructureFlow

    n_c = len(cfg["conditions"])
    flags = [n in set(cfg["log_inputs"]) for n in cfg["inputs"]]
    z = np.concatenate([SubstructureFlow.transform_inputs(x_train[:, n_c:], flags),
                        x_train[:, :n_c].astype(np.float64)], axis=1)
    centre, scale = z.mean(axis=0), z.std(axis=0)
    scale[scale == 0] = 1.0
    torch.manual_seed(cfg["seed"])
    model = SubstructureFlow(n_c, len(cfg["inputs"]), log_inputs=flags, centre=centre,
                            scale=scale, transforms=cfg["transforms"], hidden=cfg["hidden"])
    history = fit(model, [x_train], [x_val], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                  lr=cfg["lr"], patience=cfg["patience"], lr_patience=cfg["lr_patience"],
                  seed=cfg["seed"], threads=cfg["threads"])
    model.eval()
    model.set_reference(x_train)
    return model, history


def provenance() -> dict[str, str]:
    """Package version and the git commit of the source tree (``"unknown"`` outside git)."""
    from coffea_ad import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=Path(__file__).parent, capture_output=True, text=True,
                               check=True).stdout.strip()
        commit += " (uncommitted changes)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"package_version": __version__, "git_commit": commit}


def samples_by_content(fileset: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """What a dataset *is* (process, seed, events, non-default settings are all in the
    generator metadata), so that it can be regenerated; file bytes are not reproducible."""
    out = {}
    for n in names:
        meta = fileset[n].get("metadata", {})
        out[n] = {k: meta[k] for k in ("process", "seed", "nevents", "settings", "versions")
                  if k in meta}
    return out


def run(config: dict[str, Any] | None, fileset: dict | str | Path,
        out: str | Path) -> dict[str, Any]:
    """Train, evaluate on the held-out background split and the eval datasets, export.

    Returns:
        ``{"auc": {dataset: AUC}, "n_train", "n_val", "n_test", "onnx", "contract", "card"}``.
    """
    cfg = recipe.resolve_config(CONFIG, config, recipe="svj_flow")
    for key in ("train_datasets", "eval_datasets"):  # --set k=a,b gives a string
        if isinstance(cfg[key], str):
            cfg[key] = [v.strip() for v in cfg[key].split(",") if v.strip()]
    fs = load_fileset(fileset)
    train_ds, signals, others = recipe.dataset_roles(fs, cfg["train_datasets"])
    evals = list(cfg["eval_datasets"]) if cfg["eval_datasets"] is not None else signals + others
    names = [*cfg["conditions"], *cfg["inputs"]]
    tables = load_jet_tables(fs, names, datasets=train_ds + evals, jets=cfg["jets"],
                             max_jets=cfg["max_jets"], min_pt=cfg["min_pt"])
    bkg = concat_tables([tables[n] for n in train_ds])
    tr, va, te = split_indices(len(bkg), val_fraction=cfg["val_fraction"],
                               test_fraction=cfg["test_fraction"], seed=cfg["seed"],
                               groups=bkg.event)
    model, history = build_and_fit(bkg.x[tr], bkg.x[va], cfg)
    result = export(model, history, cfg, out=out, fileset=fs, train_ds=train_ds,
                    x_train=bkg.x[tr], x_test=bkg.x[te], w_test=bkg.weight[te],
                    evals={n: (tables[n].x, tables[n].weight) for n in evals},
                    n_rows={"train": len(tr), "val": len(va), "test": len(te)})
    return result


def export(model, history, cfg: Mapping[str, Any], *, out, fileset, train_ds: Sequence[str],
           x_train: np.ndarray, x_test: np.ndarray, w_test: np.ndarray,
           evals: Mapping[str, tuple[np.ndarray, np.ndarray]],
           n_rows: Mapping[str, int], command: str | None = None) -> dict[str, Any]:
    """Contract, ONNX export and card of a trained flow."""
    from coffea_ad.nn.fit import predict

    names = [*cfg["conditions"], *cfg["inputs"]]
    test_scores = predict(model, [x_test])[0] if len(x_test) else np.zeros(0)
    aucs = {}
    for name, (x, w) in evals.items():
        if len(x) and len(test_scores):
            aucs[name] = round(auc(test_scores, predict(model, [x])[0], weights_bkg=w_test,
                                   weights_sig=w), 4)
    config_args = " ".join(f"--set {k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                           for k, v in cfg.items() if v != CONFIG.get(k))
    contract = ModelContract(
        name="svj_flow", kind="density", level="jet", jets=cfg["jets"],
        inputs=[InputSpec(name="features", features=names, shape=[len(names)],
                          scaling="in_graph")],
        outputs=[OutputSpec("score", "score: exp((nll - nll_ref) / n_inputs), the inverse QCD "
                            "density per input dimension relative to the median training jet "
                            "(1 = typical QCD; higher = more anomalous at the jet's p_T)", []),
                 OutputSpec("nll", "-log p(standardized substructure | log p_T) under the QCD "
                            "flow (same ordering as score)", [])],
        score="score", opset=DEFAULT_OPSET,
        description=(f"p_T-conditioned masked autoregressive flow ({cfg['transforms']} "
                     f"transforms, hidden {tuple(cfg['hidden'])}) on {len(cfg['inputs'])} "
                     "scale-invariant substructure variables of AK8 jets, conditioned on "
                     f"{', '.join(cfg['conditions'])}; trained on background jets of "
                     f"{', '.join(train_ds)}. No φ, no η."),
        training={"datasets": list(train_ds),
                  "conditions": list(cfg["conditions"]),
                  "samples": samples_by_content(fileset, train_ds),
                  "selection": {"jets": cfg["jets"], "max_jets": cfg["max_jets"],
                                "min_pt": cfg["min_pt"]},
                  "n_jets": dict(n_rows),
                  "split": {"seed": cfg["seed"], "val_fraction": cfg["val_fraction"],
                            "test_fraction": cfg["test_fraction"], "grouped_by": "event"},
                  "command": command or ("coffea-ad train svj_flow --fileset FILESET "
                                         f"{config_args} --out {Path(out).name}").strip(),
                  **provenance()},
        metrics={"auc": aucs,
                 "test_background_mean_score": float(np.mean(test_scores))
                 if len(test_scores) else None},
    )
    paths = recipe.finish(model, contract, out=out, example={"features": x_train[:16]},
                          check={"features": x_test[:37] if len(x_test) else x_train[:37]},
                          config=cfg, history=history)
    return {"auc": aucs, **{f"n_{k}": v for k, v in n_rows.items()},
            "epochs": len(history.train_loss), "best_val_loss": history.best_val_loss,
            "onnx": str(paths["onnx"]), "contract": str(paths["contract"]),
            "card": str(paths["card"])}
