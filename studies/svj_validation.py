"""SVJ tagger validation: separation beyond kinematics across the signal grid, and the ABCD
closure on independent background-only QCD.

    python studies/svj_validation.py --data /work/data/svj --out OUT \\
        --model CAL/svj_flow_s0.onnx --model CAL/svj_flow_s1.onnx ... \\
        [--closure-data qcd_phys --closure-data qcd_phys2] [--no-bdt]

``--data`` is a ``coffea-ad generate`` folder with the datasets (see ``SAMPLES`` below for the
commands): ``qcd_train`` (the models' training QCD, used here only for the BDT ceiling),
``qcd_test`` (independent p̂_T-flattened QCD: AUCs and the working point), ``qcd_phys``
(independent unflattened QCD: the ABCD closure, unweighted) and ``svj_M_R`` for the grid.
Several ``--model`` files (seeds of one recipe) give mean ± standard deviation.

Per grid point and per jet (the two leading preselected AK8 jets): raw AUC, AUC in jet-p_T
bins, AUC with QCD reweighted to the signal's jet-p_T spectrum, and the same for a supervised
gradient-boosted classifier on the model's substructure inputs (the ceiling; trained on
``qcd_train`` against half of the signal events, evaluated on ``qcd_test`` and the other
half). The ABCD closure uses the event score of the SVJ processor (the larger of the two jets'
scores) with the jet working point at 10 % mistag (a decorrelated model's recorded
``metrics.tag_threshold``, ln 10; otherwise the 90 % quantile of its qcd_test jet scores), per
m_T bin, on the ``--closure-data`` datasets merged (default ``qcd_phys``), with |Δη_jj|
(signal-like below 1.3) and with R_T = MET/m_T (signal-like above 0.15) as second variable, with
and without the preselection MET/m_T > 0.25 (|Δη_jj| only; R_T is the cut variable there); for
the first model and then per model, with the event tag rates in and out of |Δη_jj| < 1.3 per
m_T bin. Also the QCD mistag per jet-p_T bin at each model's working point on ``qcd_test``.
Prints the tables and writes ``OUT/svj_validation.json`` and ``OUT/svj_validation.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import svj_tables

from coffea_ad.stats.abcd import abcd_closure
from coffea_ad.stats.kinematics import binned_auc, reweighted_auc
from coffea_ad.stats.roc import auc

GRID = [(m, r) for m in (1500, 3000, 4500) for r in (0.15, 0.3, 0.6)]
PT_REWEIGHT_EDGES = np.arange(200.0, 3001.0, 50.0)
PT_BINS = np.array([200.0, 400.0, 600.0, 800.0, 1000.0, 1300.0, 1700.0, 2500.0])
MT_EDGES = np.array([600.0, 800.0, 1000.0, 1200.0, 1400.0, 1600.0, 1900.0, 2300.0, 3000.0])
MISTAG = 0.10
SAMPLES = {
    "qcd_train": "coffea-ad generate qcd -n 60000 -s 1401 --dataset qcd_train "
                 "--set flatten_pthat=4.5 --set pthat_min=300 --jobs 2 -o DATA",
    "qcd_test": "coffea-ad generate qcd -n 60000 -s 1402 --dataset qcd_test "
                "--set flatten_pthat=4.5 --set pthat_min=300 --jobs 2 -o DATA",
    "qcd_phys": "coffea-ad generate qcd -n 60000 -s 1403 --dataset qcd_phys "
                "--set pthat_min=300 --jobs 2 -o DATA",
    "qcd_phys2": "coffea-ad generate qcd -n 60000 -s 1405 --dataset qcd_phys2 "
                 "--set pthat_min=300 --jobs 2 -o DATA",
    "qcd_phys3": "coffea-ad generate qcd -n 60000 -s 1407 --dataset qcd_phys3 "
                 "--set pthat_min=300 --jobs 2 -o DATA",
    "qcd_cal": "coffea-ad generate qcd -n 40000 -s 1404 --dataset qcd_cal "
               "--set flatten_pthat=4.5 --set pthat_min=300 --jobs 2 -o DATA",
    "qcd_cal2": "coffea-ad generate qcd -n 80000 -s 1406 --dataset qcd_cal2 "
                "--set flatten_pthat=4.5 --set pthat_min=300 --jobs 2 -o DATA",
    "svj_M_R": "coffea-ad generate svj -n 8000 -s $((1410 + M/100)) --dataset svj_M_R "
               "--set mzprime=M --set rinv=R --jobs 2 -o DATA",
}


class OnnxJetModel:
    """A shipped jet-level model run on the cached feature tables (the contract's features,
    computed by the library's ``jet_features`` like the scorer does)."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.path = path
        self.contract = json.loads(path.with_suffix(".json").read_text())
        self.features = self.contract["inputs"][0]["features"]
        self.input = self.contract["inputs"][0]["name"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.output = self.contract["score"]

    def jet_scores(self, table: dict[str, np.ndarray]) -> np.ndarray:
        """``[2n]`` scores: leading jets then subleading jets."""
        x, _ = svj_tables.jets(table, self.features)
        return self.session.run([self.output], {self.input: x.astype(np.float32)})[0].ravel()


def jet_weights(table: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([table["weight"]] * 2)


def jet_pt(table: dict[str, np.ndarray]) -> np.ndarray:
    return svj_tables.jets(table, ["pt"])[0][:, 0].astype(np.float64)


def point_metrics(sb, wb, ptb, ss, pts) -> dict[str, float | list]:
    r, cov = reweighted_auc(sb, ss, ptb, pts, PT_REWEIGHT_EDGES, weights_bkg=wb)
    b = binned_auc(sb, ss, ptb, pts, PT_BINS, weights_bkg=wb, min_events=50)
    return {"auc": auc(sb, ss, weights_bkg=wb), "auc_ptrw": r, "coverage": cov,
            "auc_pt_bins": [None if np.isnan(v) else round(float(v), 4) for v in b.auc]}


def bdt_ceiling(features, train, test, signal, seed: int = 0) -> dict[str, float]:
    """Supervised classifier QCD vs signal on ``features``: trained on ``qcd_train`` and the
    even signal events, scored on ``qcd_test`` and the odd ones (split by event)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    xtr, _ = svj_tables.jets(train, features)
    # 40k QCD jets and 100 boosting rounds: the ceiling to two decimals in a minute on 2 cores
    xtr = xtr[np.random.default_rng(seed).permutation(len(xtr))[:40000]]
    xs, ev = svj_tables.jets(signal, features)
    even = ev % 2 == 0
    # the training QCD is p̂_T-flattened: no weights, so the classifier cannot lean on the
    # p_T spectrum through the weights (it sees no p_T input either)
    x = np.concatenate([xtr, xs[even]])
    y = np.r_[np.zeros(len(xtr)), np.ones(even.sum())]
    w = np.r_[np.ones(len(xtr)), np.full(even.sum(), len(xtr) / even.sum())]
    clf = HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(x, y, sample_weight=w)
    xb, _ = svj_tables.jets(test, features)
    sb = clf.predict_proba(xb)[:, 1]
    ss = clf.predict_proba(xs[~even])[:, 1]
    return point_metrics(sb, jet_weights(test), jet_pt(test), ss, jet_pt(signal)[~even])


def closure(scores_j: np.ndarray, table: dict[str, np.ndarray], threshold: float, *,
            second: str, min_rt: float | None) -> dict:
    n = len(table["mt"])
    event_score = np.maximum(scores_j[:n], scores_j[n:])
    keep = np.ones(n, bool) if min_rt is None else table["rt"] > min_rt
    y, y_cut, y_pass = ((table["deta"], 1.3, "below") if second == "deta_jj"
                        else (table["rt"], 0.15, "above"))
    c = abcd_closure(event_score[keep], y[keep], x_cut=threshold, y_cut=y_cut, y_pass=y_pass,
                     weights=table["weight"][keep], mass=table["mt"][keep], mass_edges=MT_EDGES)
    p = c.prediction
    return {"second": second, "min_rt": min_rt, "chi2": c.chi2, "ndf": c.ndf,
            "p_value": c.p_value,
            "observed": np.atleast_1d(p.observed).tolist(),
            "predicted": np.atleast_1d(p.predicted).tolist(),
            "predicted_err": np.atleast_1d(p.predicted_err).tolist(),
            "pull": [None if not np.isfinite(v) else round(float(v), 3)
                     for v in np.atleast_1d(c.pull)]}


def working_point(model: OnnxJetModel, test_scores: np.ndarray, weights: np.ndarray) -> float:
    """The model's recorded 10 % working point (decorrelated models: ln 10 by construction),
    else the 90 % quantile of its qcd_test jet scores."""
    recorded = model.contract.get("metrics", {}).get("tag_threshold", {})
    if f"{MISTAG:g}" in recorded:
        return float(recorded[f"{MISTAG:g}"])
    return weighted_quantile(test_scores, weights, 1.0 - MISTAG)


def working_point_source(model: OnnxJetModel) -> str:
    if f"{MISTAG:g}" in model.contract.get("metrics", {}).get("tag_threshold", {}):
        return "the model's recorded 10 % working point, ln 10"
    return "10 % mistag on qcd_test"


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    cw = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cw, q * cw[-1])])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", type=Path, action="append", required=True,
                    help="ONNX model with its contract (repeat for seeds of one recipe)")
    ap.add_argument("--no-bdt", action="store_true", help="skip the supervised ceiling")
    ap.add_argument("--closure-data", action="append", metavar="DATASET",
                    help="independent unflattened QCD for the ABCD closure (repeat to merge; "
                         "default qcd_phys)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    train = svj_tables.load(args.data, "qcd_train")
    test = svj_tables.load(args.data, "qcd_test")
    closure_names = args.closure_data or ["qcd_phys"]
    parts = [svj_tables.load(args.data, n) for n in closure_names]
    phys = {k: np.concatenate([t[k] for t in parts]) for k in parts[0]}
    models = [OnnxJetModel(p) for p in args.model]
    inputs = [f for f in models[0].features if f not in ("log_pt", "pt", "eta", "phi")]
    wb, ptb = jet_weights(test), jet_pt(test)
    test_scores = [m.jet_scores(test) for m in models]

    print(f"models: {[str(p) for p in args.model]}")
    print("input correlation with jet p_T in qcd_test (Pearson, physical weights):")
    x, _ = svj_tables.jets(test, inputs)
    for i, name in enumerate(inputs):
        r = np.cov(x[:, i], ptb, aweights=wb)
        print(f"  {name:15s} {r[0, 1] / np.sqrt(r[0, 0] * r[1, 1]):+.3f}")

    rows, result = [], {"models": [str(p) for p in args.model], "grid": {}, "closure": []}
    header = (f"| (m_Z', r_inv) | raw AUC | p_T-rw AUC (mean ± sd, {len(models)} models) | "
              f"AUC in jet-p_T bins {PT_BINS.astype(int).tolist()} | BDT raw | BDT p_T-rw |")
    rows += [header, "|---|---|---|---|---|---|"]
    for m, r in GRID:
        name = f"svj_{m}_{r}"
        sig = svj_tables.load(args.data, name)
        pts = jet_pt(sig)
        per_model = [point_metrics(sb, wb, ptb, mdl.jet_scores(sig), pts)
                     for sb, mdl in zip(test_scores, models, strict=True)]
        raw = np.array([p["auc"] for p in per_model])
        rw = np.array([p["auc_ptrw"] for p in per_model])
        bins = np.array([[np.nan if v is None else v for v in p["auc_pt_bins"]]
                         for p in per_model])
        bdt = None if args.no_bdt else bdt_ceiling(inputs, train, test, sig)
        result["grid"][name] = {"models": per_model, "bdt": bdt,
                                "auc_ptrw_mean": float(rw.mean()),
                                "auc_ptrw_sd": float(rw.std(ddof=1)) if len(rw) > 1 else 0.0}
        bins_txt = " ".join("—" if np.isnan(bins[:, i]).all() else f"{np.nanmean(bins[:, i]):.2f}"
                            for i in range(bins.shape[1]))
        rows.append(f"| ({m}, {r}) | {raw.mean():.3f} | {rw.mean():.3f} ± "
                    f"{rw.std(ddof=1) if len(rw) > 1 else 0:.3f} | {bins_txt} | "
                    + (f"{bdt['auc']:.3f} | {bdt['auc_ptrw']:.3f} |" if bdt else "— | — |"))
        print(rows[-1], flush=True)

    # the mistag per jet-p_T bin at each model's working point, on the independent qcd_test
    thresholds = [working_point(m, sb, wb) for m, sb in zip(models, test_scores, strict=True)]
    rows += ["", "QCD mistag (qcd_test, physical weights) per jet p_T at each model's working "
             "point (" + ", ".join(f"{t:.4g}" for t in thresholds) + "; mean ± sd over models):",
             "", "| jet p_T [GeV] | " + " | ".join(f"{int(a)}-{int(b)}" for a, b in
                                                   itertools.pairwise(PT_BINS))
             + " |", "|---" * len(PT_BINS) + "|"]
    fr = np.array([[np.sum(wb[(ptb >= a) & (ptb < b) & (sb > t)]) / np.sum(wb[(ptb >= a) & (ptb < b)])
                    for a, b in itertools.pairwise(PT_BINS)]
                   for sb, t in zip(test_scores, thresholds, strict=True)])
    rows.append("| mistag | " + " | ".join(
        f"{fr[:, i].mean():.3f} ± {fr[:, i].std(ddof=1) if len(fr) > 1 else 0:.3f}"
        for i in range(fr.shape[1])) + " |")
    result["mistag_pt_bins"] = fr.tolist()
    print("\n".join(rows[-5:]), flush=True)

    # closure: first model (the shipped one), at its working point
    thr = thresholds[0]
    phys_scores = models[0].jet_scores(phys)
    rows += ["", (f"ABCD closure on {'+'.join(closure_names)} ({len(phys['mt'])} preselected "
             f"events), jet threshold {thr:.4g} ({working_point_source(models[0])}), model "
             f"{args.model[0].name}, m_T bins {MT_EDGES.astype(int).tolist()}:"), "",
             "| second variable | MET/m_T > 0.25 | χ²/ndf | p-value | pulls per m_T bin |",
             "|---|---|---|---|---|"]
    for second, min_rt in (("deta_jj", None), ("deta_jj", 0.25), ("met_over_mt", None)):
        c = closure(phys_scores, phys, thr, second=second, min_rt=min_rt)
        result["closure"].append(c)
        pulls = " ".join("—" if v is None else f"{v:+.2f}" for v in c["pull"])
        rows.append(f"| {second} | {'yes' if min_rt else 'no'} | {c['chi2']:.1f}/{c['ndf']} | "
                    f"{c['p_value']:.3f} | {pulls} |")
        print(rows[-1], flush=True)
    # the same closure for every model (seed spread of the closure)
    if len(models) > 1:
        rows += ["", "Closure per model (|Δη_jj| / R_T, χ²/ndf p):", ""]
        result["closure_per_model"] = []
        for mdl, t in zip(models, thresholds, strict=True):
            ps = phys_scores if mdl is models[0] else mdl.jet_scores(phys)
            cs = [closure(ps, phys, t, second=v, min_rt=None) for v in ("deta_jj", "met_over_mt")]
            result["closure_per_model"].append(
                {"model": str(mdl.path), **{c["second"]: {k: c[k] for k in ("chi2", "ndf", "p_value")}
                                           for c in cs}})
            rows.append(f"- {mdl.path.name}: " + "; ".join(
                f"{c['second']} {c['chi2']:.1f}/{c['ndf']} p = {c['p_value']:.3f}" for c in cs))
            print(rows[-1], flush=True)
    # why a closure fails: event tag rate in A (|Δη_jj| < 1.3) and B per m_T bin
    n = len(phys["mt"])
    tagged = np.maximum(phys_scores[:n], phys_scores[n:]) > thr
    rows += ["", ("Event tag rate (larger jet score above threshold) per m_T bin, |Δη_jj| < 1.3 "
             "vs ≥ 1.3 (unweighted, binomial errors):"), "",
             "| m_T [GeV] | events < 1.3 | rate < 1.3 | events ≥ 1.3 | rate ≥ 1.3 |",
             "|---|---|---|---|---|"]
    for a, b in itertools.pairwise(MT_EDGES):
        m = (phys["mt"] >= a) & (phys["mt"] < b)
        cells = []
        for sel in (m & (phys["deta"] < 1.3), m & (phys["deta"] >= 1.3)):
            f = tagged[sel].mean() if sel.any() else np.nan
            cells += [str(int(sel.sum())), f"{f:.3f} ± {np.sqrt(f * (1 - f) / max(sel.sum(), 1)):.3f}"]
        rows.append(f"| {int(a)}-{int(b)} | " + " | ".join(cells) + " |")
    print("\n".join(rows[-len(MT_EDGES) - 3:]), flush=True)
    result["threshold"] = thr
    result["samples"] = SAMPLES
    text = "\n".join(rows) + "\n"
    for path, content in ((args.out / "svj_validation.md", text),
                          (args.out / "svj_validation.json", json.dumps(result, indent=1))):
        tmp = path.with_name("." + path.name + ".tmp")
        tmp.write_text(content)
        tmp.rename(path)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
