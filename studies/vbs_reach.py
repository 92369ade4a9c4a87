"""3σ reach of the VBS anomaly scores: the smallest signal scale factor with σ_max ≥ 3.

    python studies/vbs_reach.py --data /work/data/lhco/vbs --work /work/data/lhco/vbs_models \
        [--lumi 350] [--ship models]

The figure of merit of the seed's VBS study (VAE vs VAE + DNN on same-sign WW + 2 jets): for a
signal scaled by k, σ(k) = |BSM − SM| / √SM = k·S / √B at a score cut, σ_max its maximum over
the cuts, and the reach is the smallest k with σ_max ≥ 3 at ``--lumi`` fb⁻¹. Here the signal is
the H±± → W±W± benchmark of ``coffea-ad generate hpp`` and k multiplies its Pythia cross
section.

Samples (``coffea-ad generate`` into ``--data``; every completed file, i.e. with its provenance
JSON, is used): SM ``wz`` (leptonic W and Z), ``ttbar`` (dileptonic) and ``wjets`` (leptonic)
where present, signal ``hpp``. Files with an even index train (the recipes split them into
train / validation / test themselves), files with an odd index are the evaluation set that
no model has seen. The evaluation events pass the ``vbs`` processor's default preselection
(:func:`coffea_ad.features.vbs_selection`, ``event_rows(require="vbs")``): B is what the
processor selects. The models train on a looser region containing it (:data:`LOOSE`,
``--train-region full`` for the full preselection). Yields: genWeight × σ_gen × L / Σ genWeight of the evaluation files (σ_gen:
Pythia's sigmaGen recorded per file).

Printed: the evaluation sample (MC events and yields per process after the selection), then
per score: AUC, the best cut, S and B there, σ_max at k = 1, k_3σ = 3 / σ_max(1) (σ is linear in
k at fixed cut, so the best cut does not depend on k), and k_3σ with the cut chosen on the other
half of the evaluation events (an unbiased version of the same number).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from coffea_ad.nn.data import event_rows, load_rows
from coffea_ad.nn.recipe import luminosity_weights
from coffea_ad.stats.roc import auc
from coffea_ad.stats.significance import significance_scan

SM = ("wz", "ttbar", "wjets")
#: training region: the processor's preselection with looser jet cuts (same-sign leptons, two
#: jets p_T > 30 GeV, m_jj > 200 GeV, |Δη_jj| > 1); the full cuts keep ~0.1 % of WZ and ttbar,
#: too few events to train on at this sample size
LOOSE = {"min_jet_pt": 30.0, "min_mjj": 200.0, "min_deta_jj": 1.0}
SIGNAL = "hpp"


def fileset(data: Path, *, evaluation: bool) -> dict:
    """Completed files of each dataset with an odd (evaluation) or even (training) index;
    metadata xsec (event-weighted mean of the files' sigmaGen) and sumw of those files."""
    out = {}
    for name in (*SM, SIGNAL):
        provs = [json.loads(p.read_text()) for p in sorted((data / name).glob(f"{name}_*.json"))]
        provs = [p for p in provs if (p["index"] % 2 == 1) == evaluation]
        if not provs:
            continue
        n = np.array([p["nevents"] for p in provs], float)
        xs = np.array([p["xsec_pb"] for p in provs], float)
        out[name] = {
            "files": {str(data / name / f"{name}_{p['index']:04d}.root"): "Events" for p in provs},
            "metadata": {"process": provs[0]["process"], "is_signal": name == SIGNAL,
                         "settings": provs[0]["settings"], "nevents": int(n.sum()),
                         "xsec": float((n * xs).sum() / n.sum()),
                         "sumw": float(sum(p["sumw"] for p in provs))},
        }
    if SIGNAL not in out or not set(SM) & set(out):
        raise SystemExit(f"{data}: expected completed files of {SIGNAL} and of one of {SM} "
                         f"({'evaluation' if evaluation else 'training'} half)")
    return out


def scores(model: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    from coffea_ad.inference.contract import ModelContract, sidecar_path

    contract = ModelContract.read(sidecar_path(model))
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs() if o.name in ("score", "probability",
                                                               "vae_score")]
    out = sess.run(names, {contract.input_names[0]: x.astype(np.float32)})
    return {n: o.astype(np.float64).ravel() for n, o in zip(names, out, strict=True)}


def scan(sm, w_sm, sig, w_sig, *, min_sm_events: float):
    cuts = np.unique(np.quantile(sm, np.linspace(0.0, 1.0, 201)[:-1]))
    return significance_scan(sm, np.concatenate([sm, sig]), weights_sm=w_sm,
                             weights_bsm=np.concatenate([w_sm, w_sig]), cuts=cuts,
                             min_sm_events=min_sm_events)


def sigma_at(cut, sm, w_sm, sig, w_sig) -> float:
    b, s = w_sm[sm >= cut].sum(), w_sig[sig >= cut].sum()
    return float(s / np.sqrt(b)) if b > 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/data/lhco/vbs"))
    ap.add_argument("--work", type=Path, default=Path("/work/data/lhco/vbs_models"))
    ap.add_argument("--lumi", type=float, default=350.0, help="fb^-1")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-region", choices=["loose", "full"], default="loose",
                    help="train on the loose region (LOOSE) or on the full preselection")
    ap.add_argument("--min-sm-events", type=float, default=10.0,
                    help="cuts keeping fewer effective SM MC events are not scanned")
    ap.add_argument("--bootstrap", type=int, default=200,
                    help="replicas of the evaluation events (resampled with replacement) for "
                         "the spread of k_3σ and of the gain; 0: none")
    ap.add_argument("--ship", type=Path, default=None,
                    help="also copy the trained models (vbs_vae, vbs_vae_dnn) and their cards "
                         "with this table into this folder")
    args = ap.parse_args()
    t0 = time.time()
    train_fs, eval_fs = fileset(args.data, evaluation=False), fileset(args.data, evaluation=True)
    sm_names = [n for n in SM if n in train_fs]

    from coffea_ad.training import vae, vae_dnn

    cfg = {"require": "vbs", "vbs_cuts": LOOSE if args.train_region == "loose" else {},
           "lumi_fb": args.lumi, "train_datasets": sm_names,
           "epochs": args.epochs, "threads": 1, "seed": args.seed}
    models = {}
    for label, recipe in (("vbs_vae", vae), ("vbs_vae_dnn", vae_dnn)):
        res = recipe.run(cfg, train_fs, args.work / label)
        models[label] = Path(res["onnx"])
        print(f"trained {label}: {res['n_train']} training rows, {res['epochs']} epochs "
              f"({time.time() - t0:.0f} s)", flush=True)

    features = vae.CONFIG["features"]
    rows = load_rows(eval_fs, event_rows, names=features, kind="vbs", jets="Jet", require="vbs")
    w = {n: luminosity_weights(eval_fs, n, rows[n]["weight"], lumi_fb=args.lumi)
         for n in rows}
    lines = [(f"Evaluation sample (odd-index files, never trained on), vbs preselection, "
             f"L = {args.lumi:g} fb^-1:"),
             (f"{'dataset':8s} {'generated':>9s} {'selected':>8s} {'xsec [pb]':>10s} "
             f"{'yield':>10s}")]
    for n, entry in eval_fs.items():
        m = entry["metadata"]
        k = len(rows[n]["x"]) if n in rows else 0
        lines.append(f"{n:8s} {m['nevents']:9d} {k:8d} {m['xsec']:10.4g} "
                     f"{(w[n].sum() if n in w else 0.0):10.4g}")
    sm_present = [n for n in sm_names if n in rows]
    x_sm = np.concatenate([rows[n]["x"] for n in sm_present])
    w_sm = np.concatenate([w[n] for n in sm_present])
    proc_sm = np.concatenate([np.full(len(rows[n]["x"]), i) for i, n in enumerate(sm_present)])
    x_sig, w_sig = rows[SIGNAL]["x"], w[SIGNAL]
    half_sm = np.arange(len(x_sm)) % 2
    half_sig = np.arange(len(x_sig)) % 2

    lines += ["", (f"3σ reach (σ = k·S/√B at the best cut; cuts keep >= {args.min_sm_events:g} "
              f"effective SM MC events)"),
              f"{'score':22s} {'AUC':>6s} {'cut':>9s} {'S(k=1)':>9s} {'B':>9s} "
              + " ".join(f"{'B_' + n:>9s}" for n in sm_present)
              + f" {'σmax(k=1)':>10s} {'k_3σ':>9s} {'k_3σ held-out cut':>18s}"]
    reach = {}
    kept_scores = {}
    for label, path in models.items():
        s_sm, s_sig = scores(path, x_sm), scores(path, x_sig)
        for out_name in s_sm:
            name = f"{label}:{out_name}"
            a, b = s_sm[out_name], s_sig[out_name]
            kept_scores[name] = (a, b)
            res = scan(a, w_sm, b, w_sig, min_sm_events=args.min_sm_events)
            k3 = 3.0 / res.best_sigma
            # sigma is linear in k at every cut: the rescaled scan reaches exactly 3
            check = scan(a, w_sm, b, k3 * w_sig, min_sm_events=args.min_sm_events)
            assert abs(check.best_sigma - 3.0) < 1e-6, check.best_sigma
            held = []
            for h in (0, 1):  # choose the cut on one half, measure on the other
                pick = scan(a[half_sm == h], 2 * w_sm[half_sm == h], b[half_sig == h],
                            2 * w_sig[half_sig == h], min_sm_events=args.min_sm_events / 2)
                held.append(sigma_at(pick.best_cut, a[half_sm != h], 2 * w_sm[half_sm != h],
                                     b[half_sig != h], 2 * w_sig[half_sig != h]))
            k3_held = 3.0 / np.mean(held)
            cut = res.best_cut
            by_proc = [w_sm[(a >= cut) & (proc_sm == i)].sum() for i in range(len(sm_present))]
            reach[name] = {"auc": auc(a, b, weights_bkg=w_sm, weights_sig=w_sig),
                           "cut": cut, "s": float(res.n_bsm[res.best_index]
                                                  - res.n_sm[res.best_index]),
                           "b": float(res.n_sm[res.best_index]), "b_by_process": by_proc,
                           "sigma_max": res.best_sigma, "k3": k3, "k3_held_out": k3_held}
            r = reach[name]
            lines.append(f"{name:22s} {r['auc']:6.3f} {cut:9.4g} {r['s']:9.4g} {r['b']:9.4g} "
                         + " ".join(f"{v:9.4g}" for v in by_proc)
                         + f" {r['sigma_max']:10.4g} {k3:9.4g} {k3_held:18.4g}")
    best_vae, best_dnn = reach["vbs_vae:score"], reach["vbs_vae_dnn:probability"]
    if args.bootstrap:
        # MC statistics of the evaluation events: resample SM and signal events, redo the
        # best-cut scan (same guard) for both scores
        rng = np.random.default_rng(args.seed)
        ks = {n: [] for n in ("vbs_vae:score", "vbs_vae_dnn:probability")}
        for _ in range(args.bootstrap):
            i_sm = rng.integers(0, len(w_sm), len(w_sm))
            i_sig = rng.integers(0, len(w_sig), len(w_sig))
            for n, values in ks.items():
                a, b = kept_scores[n]
                r = scan(a[i_sm], w_sm[i_sm], b[i_sig], w_sig[i_sig],
                         min_sm_events=args.min_sm_events)
                values.append(3.0 / r.best_sigma)
        k_vae, k_dnn = (np.asarray(ks[n]) for n in ks)
        ratio = k_vae / k_dnn

        def band(x):
            lo, mid, hi = np.quantile(x, [0.16, 0.5, 0.84])
            return f"{mid:.4g} [{lo:.4g}, {hi:.4g}]"

        lines += ["", (f"bootstrap of the evaluation events ({args.bootstrap} replicas, median "
                  f"[16 %, 84 %]): k_3σ VAE {band(k_vae)}, VAE+DNN {band(k_dnn)}, gain "
                  f"{band(ratio)}; gain > 1 in {np.mean(ratio > 1):.0%} of the replicas")]
    lines += ["", (f"VAE+DNN / VAE 3σ reach gain: k_3σ(VAE) / k_3σ(VAE+DNN) = "
              f"{best_vae['k3'] / best_dnn['k3']:.2f} (held-out cut: "
              f"{best_vae['k3_held_out'] / best_dnn['k3_held_out']:.2f}); no cut (selection "
              f"only): k_3σ = {3.0 / (w_sig.sum() / np.sqrt(w_sm.sum())):.4g}"),
              f"({time.time() - t0:.0f} s)"]
    text = "\n".join(lines)
    print(text, flush=True)
    (args.work / "reach.json").write_text(json.dumps(reach, indent=1) + "\n")
    (args.work / "reach.txt").write_text(text + "\n")
    if args.ship is not None:
        args.ship.mkdir(parents=True, exist_ok=True)
        for label, path in models.items():
            for stem in (label, f"{label}_history", f"{label}_loss"):
                for src in path.parent.glob(f"{stem}.*"):
                    shutil.copy2(src, args.ship / src.name)
            card = args.ship / f"{label}.md"
            card.write_text(card.read_text() + "\n## 3σ reach (studies/vbs_reach.py)\n\n```\n"
                            + text + "\n```\n")


if __name__ == "__main__":
    main()
