"""ABCD closure of the semivisible-jet analysis on background only: plain AE vs DisCo AE.

``python studies/validate_abcd.py --out DIR [--events N] [--disco L1,L2] [--disco-mt L]
[--pt-flatten] [--abcd-variable deta_jj|met_over_mt] [--min-mt GEV] [--seed S]``

What it does (the closure test on background-only samples, the DisCo-trained variant
compared with the plain one):

1. generates three samples with :func:`coffea_ad.samples.generate_fileset` (resumable):
   ``qcd_train`` (N QCD events) for training, ``qcd_test`` (N more, other Pythia seeds) for
   the closure, and ``svj`` (N/4 events, m_Z' = 3 TeV, r_inv = 0.3) for the AUC. QCD is
   generated from p̂T > 300 GeV with a p̂T-flattening bias (weighted events) so that, above
   the m_T preselection (1.5 TeV), every |Δη_jj| is populated: with p̂T > 500 GeV the
   large-|Δη| side at m_T ≈ 1.1–1.3 TeV would need jets below the generation threshold
   (m_jj ≈ 2 p_T cosh(Δη/2)), and regions B and D would be sculpted by the generator cut;
2. trains the dense AE of :mod:`coffea_ad.training.dense_ae` on ``qcd_train`` jets: plain,
   plain without the η input (``plain_no_eta``), with the DisCo penalty λ dCorr²(loss,
   |Δη_jj|) for each λ of ``--disco`` (Kasieczka & Shih, arXiv:2001.05310; ABCDisCo,
   arXiv:2007.14400), and with DisCo against m_T for each λ of ``--disco-mt``;
   ``--pt-flatten`` trains all of them on jets weighted to a flat p_T spectrum;
3. runs :class:`~coffea_ad.processors.svj.SVJProcessor` (m_T ≥ ``--min-mt``) with each model
   on ``qcd_test`` and ``svj`` and computes the closure of N_A = N_B N_C / N_D per m_T bin on
   ``qcd_test`` with :func:`coffea_ad.stats.abcd_closure` from ``hists["abcd"]``;
4. prints, per model: observed N_A against two predictions, N_B N_C / N_D of the yields
   summed over m_T and the sum of the per-m_T-bin predictions (the method), with their
   pulls, χ²/ndf and p-value of the per-bin pulls, the distance correlation of the event
   score with the second variable and with m_T (background), and the event-level AUC vs
   svj; plots the closure per model (``OUT/abcd_closure_VARIABLE_MODEL.png``).

Why DisCo against |Δη_jj| is the one to try: the ABCD plane is (score, |Δη_jj|), and
N_A = N_B N_C / N_D needs exactly these two to be independent for the background, in every
m_T bin since the estimate is made per m_T bin. A score independent of m_T keeps the m_T
shape of the tagged background (what a bump hunt in m_T needs) but does not by itself make
score and |Δη| factorize; it is run as a diagnostic because, at fixed m_T, |Δη_jj| is a
proxy of the jet p_T (p_T ≈ m_T / (2 cosh(Δη/2))), and a loss that knows the jet p_T or
mass knows |Δη_jj|. The DisCo penalty is inclusive (not per m_T bin), so it removes the
inclusive dependence only; the per-bin χ² is what tells whether that is enough.

Regions: x = max of the two leading-jet losses, passing above the cut that keeps a fraction
``--efficiency`` of the background (a score bin edge); y = |Δη_jj| passing *below*
``--y-cut`` (1.5, the CMS preselection value: central jets are signal-like), or R_T passing
above 0.15. The m_T bins of the closure merge the processor's 100 GeV bins until each holds
at least 1/``--mt-bins`` of the background.

The distance correlations are computed from the histogram (bin centres weighted by their
content: score bins of 1/24 decade, |Δη| bins of 0.1, m_T bins of 100 GeV): the same
binning the ABCD regions are built from. Everything printed is also in
``OUT/abcd_VARIABLE[_ptflat].json``, with the per-bin region yields.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.stats.abcd import merged_mass_edges, score_cut
from coffea_ad.stats.roc import binned_roc

__all__ = ["closure_summary", "main"]

QCD_TRAIN, QCD_TEST, SIGNAL = "qcd_train", "qcd_test", "svj"
#: per second variable: (default cut, side that passes = the signal-like side)
Y_SETTINGS: dict[str, tuple[float, str]] = {"deta_jj": (1.5, "below"), "met_over_mt": (0.15, "above")}


def _rebinned(h: Any, edges: np.ndarray) -> Any:
    """``h`` with its ``mt`` axis merged to ``edges`` (a subset of its edges); flow dropped."""
    import hist

    old = np.asarray(h.axes["mt"].edges)
    idx = [int(np.flatnonzero(np.isclose(old, e))[0]) for e in edges]
    axes = [ax if ax.name != "mt" else hist.axis.Variable(edges, name="mt", label=ax.label)
            for ax in h.axes]
    out = hist.Hist(*axes, storage=hist.storage.Weight())
    k = h.axes.name.index("mt")
    view = h.view(flow=True)
    values, variances = view.value, view.variance
    new = out.view(flow=True)
    for j in range(len(edges) - 1):
        # +1: the flow view starts with the underflow bin
        sl = [slice(None)] * h.ndim
        sl[k] = slice(idx[j] + 1, idx[j + 1] + 1)
        dst = [slice(None)] * h.ndim
        dst[k] = j + 1
        new.value[tuple(dst)] = values[tuple(sl)].sum(axis=k)
        new.variance[tuple(dst)] = variances[tuple(sl)].sum(axis=k)
    return out


def _binned_dcorr(h2: Any) -> float:
    """Distance correlation of the two axes of a 2-d histogram (bin centres, weighted)."""
    from coffea_ad.stats.decorrelation import distance_correlation

    values = np.asarray(h2.values(), dtype=np.float64)
    cx, cy = (np.asarray(ax.centers) for ax in h2.axes)
    gx, gy = np.meshgrid(cx, cy, indexing="ij")
    keep = values > 0
    return float(distance_correlation(gx[keep], gy[keep], weights=values[keep]))


def closure_summary(h_abcd: Any, *, x_cut: float, y_cut: float, mt_edges: np.ndarray,
                    y_axis: str = "deta_jj") -> tuple[Any, dict[str, Any]]:
    """ABCD closure of one background histogram and the figures of the table.

    Args:
        h_abcd: ``score × y_axis × mt`` histogram of the background.
        x_cut: score cut (passes above).
        y_cut: cut on the second variable (passing side from :data:`Y_SETTINGS`).
        mt_edges: merged m_T edges.
        y_axis: the second variable's axis.

    Returns:
        ``(ABCDClosure, {"observed", "predicted", ..., "dcorr_deta", "dcorr_mt"})``.
    """
    from coffea_ad.stats import abcd_closure

    cl = abcd_closure(_rebinned(h_abcd, mt_edges), x_cut=x_cut, y_cut=y_cut, x_axis="score",
                      y_axis=y_axis, mass_axis="mt", y_pass=Y_SETTINGS[y_axis][1])
    integ, per_bin = cl.integrated, cl.prediction
    ok = np.isfinite(per_bin.predicted)
    # the per-bin method's total: sum of the per-bin predictions (bins with N_D > 0)
    sum_pred = float(np.sum(per_bin.predicted[ok]))
    sum_pred_err = float(np.sqrt(np.sum(per_bin.predicted_err[ok] ** 2)))
    sum_obs = float(np.sum(per_bin.observed[ok]))
    sum_obs_err = float(np.sqrt(np.sum(per_bin.observed_err[ok] ** 2)))
    return cl, {
        "observed": float(integ.observed), "observed_err": float(integ.observed_err),
        "predicted": float(integ.predicted), "predicted_err": float(integ.predicted_err),
        "integrated_pull": float(integ.pull),
        "sum_bins_observed": sum_obs, "sum_bins_observed_err": sum_obs_err,
        "sum_bins_predicted": sum_pred, "sum_bins_predicted_err": sum_pred_err,
        "sum_bins_pull": (sum_obs - sum_pred) / float(np.hypot(sum_obs_err, sum_pred_err)),
        "chi2": cl.chi2, "ndf": cl.ndf,
        "p_value": cl.p_value, "closes": cl.closes,
        "pulls": [round(float(p), 3) for p in np.atleast_1d(cl.pull)],
        "dcorr_y": _binned_dcorr(h_abcd[{"mt": sum}]),
        "dcorr_mt": _binned_dcorr(h_abcd[{y_axis: sum}]),
        "regions_per_bin": {k: np.round(getattr(per_bin.counts, k), 2).tolist()
                            for k in ("a", "b", "c", "d")},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the validation (see the module docstring); returns what it writes to OUT/abcd_VARIABLE.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--events", type=int, default=12000,
                        help="QCD events for training and again for the closure")
    parser.add_argument("--disco", default="10,50,200",
                        help="DisCo λ values, comma-separated: one DisCo model per value")
    parser.add_argument("--disco-mt", default="50",
                        help="DisCo λ values against m_T (diagnostic models; '' for none)")
    parser.add_argument("--pt-flatten", action="store_true",
                        help="train every model on jets weighted to a flat p_T spectrum")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--pthat-min", type=float, default=300.0,
                        help="QCD generation threshold p̂T (GeV)")
    parser.add_argument("--flatten-pthat", type=float, default=4.5,
                        help="QCD p̂T-flattening power (weighted events; 0: off)")
    parser.add_argument("--min-mt", type=float, default=1500.0,
                        help="m_T preselection (GeV) of the processor")
    parser.add_argument("--efficiency", type=float, default=0.1,
                        help="background fraction above the score cut")
    parser.add_argument("--abcd-variable", choices=sorted(Y_SETTINGS), default="deta_jj",
                        help="second ABCD variable, also the DisCo variable")
    parser.add_argument("--y-cut", type=float, default=None,
                        help="cut on it (default: 1.5 for deta_jj, 0.15 for met_over_mt)")
    parser.add_argument("--mt-bins", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=1, help="generation processes")
    args = parser.parse_args(argv)

    import warnings

    import torch

    torch.set_num_threads(1)
    # the generated PFNano has no GenJetCands/JetSVs cross-references: coffea says so per file
    warnings.filterwarnings("ignore", message="Missing cross-reference index", category=RuntimeWarning)
    from coffea_ad.execution import run_processor
    from coffea_ad.plotting.stats import plot_abcd_closure
    from coffea_ad.processors.svj import SVJProcessor
    from coffea_ad.samples import generate_fileset
    from coffea_ad.training import dense_ae

    out = args.out
    y_axis = args.abcd_variable
    y_cut = Y_SETTINGS[y_axis][0] if args.y_cut is None else float(args.y_cut)
    y_pass = Y_SETTINGS[y_axis][1]
    tag = "_ptflat" if args.pt_flatten else ""
    t0 = time.perf_counter()
    n = int(args.events)
    qcd = {"pthat_min": args.pthat_min, "flatten_pthat": args.flatten_pthat}
    fs = generate_fileset({
        QCD_TRAIN: {"process": "qcd", "events": n, "settings": qcd},
        QCD_TEST: {"process": "qcd", "events": n, "settings": qcd},
        SIGNAL: {"process": "svj", "events": max(n // 4, 200),
                 "settings": {"mzprime": 3000.0, "rinv": 0.3}},
    }, out=out / f"samples_pthat{args.pthat_min:g}_flat{args.flatten_pthat:g}", seed=args.seed,
        jobs=args.jobs)
    print(f"samples ready in {time.perf_counter() - t0:.0f} s", flush=True)
    train_fs = {k: fs[k] for k in (QCD_TRAIN, SIGNAL)}
    test_fs = {k: fs[k] for k in (QCD_TEST, SIGNAL)}

    lambdas = [float(v) for v in str(args.disco).split(",") if v.strip()]
    no_eta = [f for f in dense_ae.CONFIG["features"] if f != "eta"]
    # plain_no_eta: the plain AE without the jet η input, the direct route from the
    # loss to |Δη_jj| (a diagnostic of where the plain AE's non-closure comes from)
    models: dict[str, dict[str, Any]] = {"plain": {}, "plain_no_eta": {"features": no_eta}}
    models.update({f"disco{lam:g}": {"disco": lam, "disco_variable": y_axis} for lam in lambdas})
    # DisCo against m_T: a diagnostic of the per-bin correlation (at fixed m_T, |Δη_jj| is
    # jet p_T, p_T ~ m_T / (2 cosh(Δη/2)), so a loss that knows p_T knows |Δη_jj|)
    models.update({f"disco_mt{lam:g}": {"disco": lam, "disco_variable": "mt"}
                   for lam in (float(v) for v in str(args.disco_mt).split(",") if v.strip())})
    if args.pt_flatten:  # every model trained on jets weighted to a flat p_T spectrum
        models = {f"{k}_ptflat": {**v, "pt_flatten": True} for k, v in models.items()}
    results: dict[str, Any] = {"settings": vars(args) | {"out": str(out), "y_cut": y_cut},
                               "models": {}}
    rows = []
    for label, extra in models.items():
        t = time.perf_counter()
        trained = dense_ae.run({"seed": args.seed, "epochs": args.epochs,
                                "train_datasets": [QCD_TRAIN], **extra},
                               train_fs, out / "models" / y_axis / label)
        t_train = time.perf_counter() - t
        proc = SVJProcessor(trained["onnx"], tag_threshold=1.0, abcd_variable=y_axis,
                            abcd_binning="fine",
                            min_mt=args.min_mt,
                            scorer_options={"intra_op_threads": 1})
        res = run_processor(test_fs, proc, executor="iterative", chunksize=50_000)
        h = res["hists"]["abcd"][{"systematic": "nominal"}]
        hb, hs = h[{"dataset": QCD_TEST}], h[{"dataset": SIGNAL}]
        x_cut = score_cut(hb[{y_axis: sum, "mt": sum}], efficiency=args.efficiency)
        mt_counts = hb[{"score": sum, y_axis: sum}].values()
        mt_edges = merged_mass_edges(mt_counts, np.asarray(hb.axes["mt"].edges),
                                     n_bins=args.mt_bins)
        cl, row = closure_summary(hb, x_cut=x_cut, y_cut=y_cut, mt_edges=mt_edges,
                                  y_axis=y_axis)
        row.update({
            "model": label, "x_cut": x_cut, "mt_edges": mt_edges.tolist(),
            "auc_svj_event": binned_roc(hb[{y_axis: sum, "mt": sum}],
                                        hs[{y_axis: sum, "mt": sum}])[2],
            "auc_svj_jet_recipe": trained["auc"].get(SIGNAL),
            "dcorr_y_recipe": trained.get(f"distance_correlation_{y_axis}"),
            "train_seconds": round(t_train, 1), "epochs": trained["epochs"],
            "n_background_events": float(hb.sum(flow=True).value),
        })
        plot_abcd_closure(cl, out / f"abcd_closure_{y_axis}_{label}.png")
        results["models"][label] = row
        rows.append(row)
        print(f"{label}: trained in {t_train:.0f} s ({trained['epochs']} epochs), "
              f"score cut {x_cut:.4g}", flush=True)

    head = (f"{'model':<19} {'N_A obs':>13} {'pred (all m_T)':>14} {'pull':>6} "
            f"{'sum of bins':>13} {'pull':>6} {'chi2/ndf':>9} {'p':>8} {'dCor(s,y)':>12} "
            f"{'dCor(s,mT)':>10} {'AUC svj':>8}")
    print(f"\nABCD closure on {QCD_TEST} (background only): score >= cut (eff "
          f"{args.efficiency:g}) x {y_axis} {'<' if y_pass == 'below' else '>='} {y_cut:g}, "
          "per m_T bin")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['model']:<19} {r['observed']:>6.3g} ± {r['observed_err']:<4.2g} "
              f"{r['predicted']:>7.3g} ± {r['predicted_err']:<4.2g} {r['integrated_pull']:>6.2f} "
              f"{r['sum_bins_predicted']:>6.3g} ± {r['sum_bins_predicted_err']:<4.2g} "
              f"{r['sum_bins_pull']:>6.2f} {r['chi2']:>5.1f}/{r['ndf']:<3d} {r['p_value']:>8.2g} "
              f"{r['dcorr_y']:>12.4f} {r['dcorr_mt']:>10.4f} {r['auc_svj_event']:>8.3f}")
    print("pred (all m_T): N_B N_C / N_D of the yields summed over m_T; sum of bins: the sum "
          "of the per-m_T-bin predictions (the method); chi2 over the m_T bins' pulls")
    for r in rows:
        print(f"{r['model']}: per-bin pulls {r['pulls']} at m_T edges {r['mt_edges']}")
    results["seconds"] = round(time.perf_counter() - t0, 1)
    (out / f"abcd_{y_axis}{tag}.json").write_text(json.dumps(results, indent=2, default=float))
    print(f"total {results['seconds']:.0f} s; wrote {out / f'abcd_{y_axis}{tag}.json'}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
