"""Recipe: p_T-conditioned normalizing flow on AK8 jet substructure (semivisible-jet tagger).

The score is ``-log p(x | log p_T)`` of QCD jets (:class:`coffea_ad.nn.jet_flow.SubstructureFlow`):
how unusual a jet's substructure x is for a QCD jet of the same p_T. The inputs are
scale-invariant substructure (ρ = ln(m_SD²/p_T²), p_TD, axes, girth, LHA, EFP1, C2, D2, τ21,
τ32, multiplicity); no φ, no η, no mass or p_T except as the condition. Trained on background
only. ``coffea-ad train svj_flow --fileset F --set train_datasets=qcd_train --out
models/svj_cflow``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.errors import ComputationError, InvalidArgumentError
from coffea_ad.inference.contract import InputSpec, ModelContract, OutputSpec
from coffea_ad.nn import recipe
from coffea_ad.nn.data import concat_tables, load_fileset, load_jet_tables, split_indices
from coffea_ad.nn.export import DEFAULT_OPSET
from coffea_ad.stats.roc import auc

__all__ = ["CONFIG", "build_and_fit", "calibrate", "provenance", "run"]

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
    # the decorrelation map (coffea_ad.nn.ddt): background datasets independent of the
    # training ones on which the nll's quantiles are measured versus log p_T (and ρ); None:
    # no map, score = the flow's exp((nll - nll_ref) / n_inputs). The map needs ~100k
    # p̂_T-flattened QCD events (200k jets: its 60 nodes hold a few hundred jets at the
    # grid's corners); smaller samples: fewer ddt_points, ddt_second=none
    "calibration_datasets": None,
    # its uniform grid in log p_T: from the preselection threshold to where a ~100k-event
    # flattened QCD sample still has ~1000 jets per grid window
    "ddt_pt_range": [205.0, 2300.0],
    "ddt_points": 12,
    # a second condition of the map: its QCD quantile at the jet's p_T, on a uniform grid of
    # ddt_second_points in [0, 1]. With ρ the mistag is flat in jet mass too: at fixed m_T,
    # small |Δη_jj| selects imbalanced events whose subleading jet is heavier, and a tag that
    # prefers heavy jets then fails the |Δη_jj| ABCD closure (χ² 14.6/8 with p_T alone,
    # 6.6/8 with p_T and ρ on 66k independent QCD events; the AUCs do not drop)
    "ddt_second": "rho",
    "ddt_second_points": 5,
    # the nll levels of the map (None: coffea_ad.nn.ddt.DEFAULT_LEVELS, without its deepest
    # level when there is a second condition: each grid node then has 5x fewer jets)
    "ddt_levels": None,
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
    for key in ("train_datasets", "eval_datasets", "calibration_datasets"):  # --set k=a,b
        if isinstance(cfg[key], str):
            cfg[key] = [v.strip() for v in cfg[key].split(",") if v.strip()]
    fs = load_fileset(fileset)
    train_ds, signals, others = recipe.dataset_roles(fs, cfg["train_datasets"])
    cal_ds = list(cfg["calibration_datasets"] or [])
    if set(cal_ds) & set(train_ds):
        raise InvalidArgumentError(f"svj_flow: calibration datasets {sorted(set(cal_ds) & set(train_ds))} "
                         "are also training datasets; calibrate on an independent sample")
    evals = list(cfg["eval_datasets"]) if cfg["eval_datasets"] is not None else signals + others
    evals = [n for n in evals if n not in cal_ds]
    names = [*cfg["conditions"], *cfg["inputs"]]
    tables = load_jet_tables(fs, names, datasets=train_ds + evals + cal_ds, jets=cfg["jets"],
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
    if cal_ds:
        cal = concat_tables([tables[n] for n in cal_ds])
        calibrate(result["onnx"], cal.x, cal.weight, datasets=cal_ds,
                  samples=samples_by_content(fs, cal_ds), cfg=cfg, x_test=bkg.x[te],
                  w_test=bkg.weight[te], evals={n: (tables[n].x, tables[n].weight) for n in evals})
        result["auc"] = ModelContract.read(result["onnx"]).metrics["auc"]
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


def calibrate(onnx_path, x_cal: np.ndarray, w_cal: np.ndarray, *, datasets: Sequence[str],
              samples: Mapping[str, Any], cfg: Mapping[str, Any],
              x_test: np.ndarray | None = None, w_test: np.ndarray | None = None,
              evals: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
              command: str | None = None, selection: Mapping[str, Any] | None = None):
    """Make the exported flow's ``score`` a p_T-decorrelated tag (:mod:`coffea_ad.nn.ddt`).

    The QCD quantiles of ``nll`` are measured versus log p_T on the calibration jets
    ``x_cal`` (raw feature rows, weights ``w_cal``: never training jets), and ``score`` becomes
    ``-ln ε(nll | p_T)``: ``score > ln 10`` tags 10 % of QCD jets at every p_T. The ONNX file
    and its contract (table, samples by content, working points) are rewritten in place;
    the AUCs are recomputed with the new score when test and eval rows are given.

    Returns:
        The :class:`~coffea_ad.nn.ddt.SurvivalTable`.
    """
    import onnx
    import onnxruntime as ort

    from coffea_ad.atomic import atomic_path, atomic_write_text
    from coffea_ad.nn.ddt import (
        CDF_LEVELS,
        DEFAULT_LEVELS,
        append_to_onnx,
        fit_survival_table,
        second_condition,
        threshold_for_mistag,
    )

    onnx_path = Path(onnx_path)
    contract = ModelContract.read(onnx_path)
    if contract.training.get("calibration"):
        raise InvalidArgumentError(f"{onnx_path}: already calibrated; calibrate the flow's own export")
    names = [*cfg["conditions"], *cfg["inputs"]]
    if contract.features != names or names[0] != "log_pt":
        raise InvalidArgumentError(f"{onnx_path}: expected features starting with log_pt, {names}, found "
                         f"{contract.features}")

    def run(session, x, output):
        return session.run([output], {"features": np.asarray(x, np.float32)})[0]

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    flow = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    nll = run(flow, x_cal, "nll").astype(np.float64)
    lo, hi = np.log(np.asarray(cfg["ddt_pt_range"], np.float64))
    grid = np.linspace(lo, hi, int(cfg["ddt_points"]))
    c = x_cal[:, 0].astype(np.float64)
    second, second_info, cond2, grid2 = None, None, None, None
    levels = cfg.get("ddt_levels") or DEFAULT_LEVELS
    if str(cfg.get("ddt_second") or "none").lower() != "none":
        column = names.index(cfg["ddt_second"])
        x2 = x_cal[:, column].astype(np.float64)
        table2 = fit_survival_table(x2, c, w_cal, grid=grid, levels=CDF_LEVELS)
        second = (table2, column)
        cond2 = second_condition(table2, x2, c)
        grid2 = np.linspace(0.0, 1.0, int(cfg["ddt_second_points"]))
        levels = cfg.get("ddt_levels") or DEFAULT_LEVELS[:-1]
        second_info = {"variable": cfg["ddt_second"], "column": column,
                       "table": table2.to_dict()}
    table = fit_survival_table(nll, c, w_cal, grid=grid, levels=levels, cond2=cond2,
                               grid2=grid2)
    model = append_to_onnx(onnx.load(str(onnx_path)), table, second=second)
    tagged = ort.InferenceSession(model.SerializeToString(), opts,
                                  providers=["CPUExecutionProvider"])
    score = run(tagged, x_cal, "score").astype(np.float64)
    diff = float(np.max(np.abs(score - table(nll, c, cond2))))
    if diff > 1e-3:
        raise ComputationError(f"{onnx_path}: the ONNX decorrelation map differs from numpy by "
                               f"{diff:g}")
    with atomic_path(onnx_path) as tmp:
        onnx.save(model, str(tmp))
    contract.outputs = [
        OutputSpec("score", "score: -ln ε, ε = the fraction of QCD jets of the same p_T"
                   + (f" and {cfg['ddt_second']}" if second else "") + " (calibration "
                   "sample) with a larger nll; score > ln(1/ε) tags a fraction ε of QCD "
                   "everywhere (ln 10 = 2.3026: 10 %); same ranking as nll at fixed p_T"
                   + (f" and {cfg['ddt_second']}" if second else ""), []),
        OutputSpec("nll", "-log p(standardized substructure | log p_T) under the QCD flow", [])]
    contract.training["calibration"] = {
        "method": "quantile map of nll versus log p_T" + (
            f" and the QCD quantile of {cfg['ddt_second']} at that p_T" if second else "")
        + " (coffea_ad.nn.ddt), tent-interpolated",
        "second": second_info,
        "datasets": list(datasets), "samples": dict(samples),
        "selection": dict(selection) if selection else contract.training.get("selection"),
        "n_jets": len(x_cal), "weighted": True, "command": command,
        **provenance(), "table": table.to_dict()}
    contract.metrics["tag_threshold"] = {f"{e:g}": round(threshold_for_mistag(e), 6)
                                         for e in (0.1, 0.05, 0.01)}
    # the torch check ran on the flow before the map was appended
    contract.extra["flow_onnx_vs_torch_max_abs_diff"] = contract.extra.pop(
        "onnx_vs_torch_max_abs_diff", None)
    contract.extra["ddt_onnx_vs_numpy_max_abs_diff"] = diff
    if x_test is not None and len(x_test) and evals:
        sb = run(tagged, x_test, "score")
        contract.metrics["auc"] = {n: round(auc(sb, run(tagged, x, "score"),
                                                weights_bkg=w_test, weights_sig=w), 4)
                                   for n, (x, w) in evals.items() if len(x)}
        contract.metrics["test_background_mean_score"] = float(np.mean(sb))
    old_description = contract.description
    contract.description += (" Score decorrelated: -ln of the QCD survival fraction at the "
                             "jet's p_T" + (f" and {cfg['ddt_second']} quantile" if second else "")
                             + f", measured on {', '.join(datasets)}.")
    contract.write(onnx_path.with_suffix(".json"))
    card = onnx_path.with_suffix(".md")
    if card.exists():
        g = np.exp(table.grid)
        # the card's header lines written at export describe the flow's own score
        replace = {"- output `score`:": f"- output `score`: {contract.outputs[0].meaning}",
                   "- output `nll`:": f"- output `nll`: {contract.outputs[1].meaning}",
                   "- auc:": f"- auc: {json.dumps(contract.metrics.get('auc'))}",
                   "- test_background_mean_score:": "- test_background_mean_score: "
                   f"{contract.metrics.get('test_background_mean_score')}",
                   old_description: contract.description}
        text = "\n".join(next((v for k, v in replace.items() if line.startswith(k)), line)
                         for line in card.read_text().splitlines()) + "\n"
        atomic_write_text(card, text + (
            "\n## Decorrelation (p_T-flat mistag)\n\n"
            f"`score` = -ln ε(nll | p_T{', ' + cfg['ddt_second'] if second else ''}), measured "
            f"on {len(x_cal)} jets of {', '.join(datasets)} (not training jets) at {len(g)} "
            f"p_T points {g[0]:.0f}-{g[-1]:.0f} GeV (log-spaced; outside, the end points' map)"
            + (f" × {len(grid2)} points of the QCD quantile of {cfg['ddt_second']} at that p_T"
               if second else "") + ": `score > 2.3026` (ln 10) tags 10 % of QCD jets at "
            "every p_T, `> 4.6052` 1 %.\n"))
    return table
