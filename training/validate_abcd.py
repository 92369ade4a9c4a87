"""ABCD closure of the semivisible-jet analysis on background only: plain AE vs DisCo AE.

``python training/validate_abcd.py --out DIR [--events N] [--disco L1,L2] [--seed S]``

What it does (issue 7, "closure test in background-only samples; the DisCo-trained variant
compared with the plain one"):

1. generates three samples with :func:`coffea_ad.samples.generate_fileset` (resumable):
   ``qcd_train`` (N QCD events, p̂T > 500 GeV) for training, ``qcd_test`` (N more QCD events,
   other Pythia seeds) for the closure, and ``svj`` (N/4 events, m_Z' = 3 TeV, r_inv = 0.3)
   for the AUC;
2. trains the dense AE of :mod:`coffea_ad.training.dense_ae` on ``qcd_train`` jets: plain,
   and with the DisCo penalty λ dCorr²(loss, |Δη_jj|) for each λ of ``--disco``
   (Kasieczka & Shih, arXiv:2001.05310; ABCDisCo, arXiv:2007.14400);
3. runs :class:`~coffea_ad.processors.svj.SVJProcessor` with each model on ``qcd_test`` and
   ``svj`` and computes the closure of N_A = N_B N_C / N_D per m_T bin on ``qcd_test`` with
   :func:`coffea_ad.stats.abcd_closure` from ``hists["abcd"]``;
4. prints, per model: integrated observed vs predicted N_A, the integrated pull, χ²/ndf and
   p-value over the m_T bins, the distance correlation of the event score with |Δη_jj| and
   with m_T (background), and the event-level AUC vs svj; plots the closure per model.

Why DisCo against |Δη_jj| and not against m_T: the ABCD plane is (score, |Δη_jj|), and the
estimate N_A = N_B N_C / N_D needs exactly these two to be independent for the background,
in every m_T bin since the estimate is made per m_T bin. A score independent of m_T keeps the
m_T shape of the tagged background (what a bump hunt in m_T needs) but says nothing about
the score-|Δη| factorization; the per-bin ABCD already absorbs the score's m_T dependence.

Regions: x = max of the two leading-jet losses, passing above the cut that keeps a fraction
``--efficiency`` of the background (a score bin edge); y = |Δη_jj|, passing *below*
``--deta-cut`` (1.5, the CMS preselection value: central jets are signal-like). The m_T bins
of the closure merge the processor's 100 GeV bins until each holds at least 1/``--mt-bins``
of the background, so that every bin has events in all four regions.

The distance correlations are computed from the histogram (bin centres weighted by their
content: score bins of 1/24 decade, |Δη| bins of 0.1, m_T bins of 100 GeV): the same
binning the ABCD regions are built from. Everything printed is also in ``OUT/abcd.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["closure_summary", "main", "merged_mass_edges", "score_cut"]

QCD_TRAIN, QCD_TEST, SIGNAL = "qcd_train", "qcd_test", "svj"
Y_AXIS = "deta_jj"


def merged_mass_edges(counts: np.ndarray, edges: np.ndarray, *, n_bins: int) -> np.ndarray:
    """Merge adjacent mass bins until each holds at least ``1/n_bins`` of the total.

    Args:
        counts: yields per fine bin, ``len(edges) - 1``.
        edges: fine bin edges.
        n_bins: the number of merged bins aimed at.

    Returns:
        The merged edges (a subset of ``edges``) spanning only the bins with events; the last
        merged bin absorbs a remainder below the minimum.
    """
    counts = np.asarray(counts, dtype=np.float64)
    filled = np.flatnonzero(counts > 0)
    if filled.size == 0:
        msg = "merged_mass_edges: expected a mass distribution with events, found none"
        raise ValueError(msg)
    lo, hi = filled[0], filled[-1] + 1
    need = counts.sum() / n_bins
    out, acc = [edges[lo]], 0.0
    for i in range(lo, hi):
        acc += counts[i]
        if acc >= need and i + 1 < hi:
            out.append(edges[i + 1])
            acc = 0.0
    if acc > 0 and acc < need and len(out) > 1:
        out.pop()  # the remainder joins the previous bin
    out.append(edges[hi])
    return np.asarray(out, dtype=np.float64)


def score_cut(h_score: Any, *, efficiency: float) -> float:
    """The score-axis edge whose upper tail keeps the fraction closest to ``efficiency``.

    Args:
        h_score: 1-d score histogram of the background (flow bins counted).
        efficiency: wanted fraction of background above the cut.

    Returns:
        A bin edge of the score axis (ABCD cuts on a histogram must be bin edges).
    """
    values = np.asarray(h_score.values(flow=True), dtype=np.float64)
    edges = np.asarray(h_score.axes[0].edges)
    # tail[k] = yield above edges[k]: the overflow plus bins k..end (values[0] is underflow)
    tail = np.cumsum(values[::-1])[::-1][1:]
    frac = tail / values.sum()
    return float(edges[int(np.argmin(np.abs(frac - efficiency)))])


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


def _binned_auc(h_bkg: Any, h_sig: Any) -> float:
    from coffea_ad.stats.roc import auc

    c = np.asarray(h_bkg.axes[0].centers)
    wb, ws = np.asarray(h_bkg.values()), np.asarray(h_sig.values())
    return float(auc(c, c, weights_bkg=wb, weights_sig=ws))


def closure_summary(h_abcd: Any, *, x_cut: float, y_cut: float,
                    mt_edges: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """ABCD closure of one background histogram and the figures of the table.

    Args:
        h_abcd: ``score × deta_jj × mt`` histogram of the background.
        x_cut: score cut (passes above).
        y_cut: |Δη_jj| cut (passes below).
        mt_edges: merged m_T edges.

    Returns:
        ``(ABCDClosure, {"observed", "predicted", ..., "dcorr_deta", "dcorr_mt"})``.
    """
    from coffea_ad.stats import abcd_closure

    cl = abcd_closure(_rebinned(h_abcd, mt_edges), x_cut=x_cut, y_cut=y_cut, x_axis="score",
                      y_axis=Y_AXIS, mass_axis="mt", y_pass="below")
    integ = cl.integrated
    return cl, {
        "observed": float(integ.observed), "observed_err": float(integ.observed_err),
        "predicted": float(integ.predicted), "predicted_err": float(integ.predicted_err),
        "integrated_pull": float(integ.pull), "chi2": cl.chi2, "ndf": cl.ndf,
        "p_value": cl.p_value, "closes": cl.closes,
        "pulls": [round(float(p), 3) for p in np.atleast_1d(cl.pull)],
        "dcorr_deta": _binned_dcorr(h_abcd[{"mt": sum}]),
        "dcorr_mt": _binned_dcorr(h_abcd[{Y_AXIS: sum}]),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the validation (see the module docstring); returns what it writes to abcd.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--events", type=int, default=12000,
                        help="QCD events for training and again for the closure")
    parser.add_argument("--disco", default="10,50",
                        help="DisCo λ values, comma-separated: one DisCo model per value")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--efficiency", type=float, default=0.1,
                        help="background fraction above the score cut")
    parser.add_argument("--deta-cut", type=float, default=1.5)
    parser.add_argument("--mt-bins", type=int, default=6)
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
    t0 = time.perf_counter()
    n = int(args.events)
    fs = generate_fileset({
        QCD_TRAIN: {"process": "qcd", "events": n},
        QCD_TEST: {"process": "qcd", "events": n},
        SIGNAL: {"process": "svj", "events": max(n // 4, 200),
                 "settings": {"mzprime": 3000.0, "rinv": 0.3}},
    }, out=out / "samples", seed=args.seed, jobs=args.jobs)
    print(f"samples ready in {time.perf_counter() - t0:.0f} s", flush=True)
    train_fs = {k: fs[k] for k in (QCD_TRAIN, SIGNAL)}
    test_fs = {k: fs[k] for k in (QCD_TEST, SIGNAL)}

    lambdas = [float(v) for v in str(args.disco).split(",") if v.strip()]
    models: dict[str, dict[str, Any]] = {"plain": {}}
    models.update({f"disco{lam:g}": {"disco": lam, "disco_variable": Y_AXIS} for lam in lambdas})
    results: dict[str, Any] = {"settings": vars(args) | {"out": str(out)}, "models": {}}
    rows = []
    for label, extra in models.items():
        t = time.perf_counter()
        trained = dense_ae.run({"seed": args.seed, "epochs": args.epochs,
                                "train_datasets": [QCD_TRAIN], **extra},
                               train_fs, out / "models" / label)
        t_train = time.perf_counter() - t
        proc = SVJProcessor(trained["onnx"], tag_threshold=1.0, abcd_variable=Y_AXIS,
                            scorer_options={"intra_op_threads": 1})
        res = run_processor(test_fs, proc, executor="iterative", chunksize=50_000)
        h = res["hists"]["abcd"][{"systematic": "nominal"}]
        hb, hs = h[{"dataset": QCD_TEST}], h[{"dataset": SIGNAL}]
        x_cut = score_cut(hb[{Y_AXIS: sum, "mt": sum}], efficiency=args.efficiency)
        mt_counts = hb[{"score": sum, Y_AXIS: sum}].values()
        mt_edges = merged_mass_edges(mt_counts, np.asarray(hb.axes["mt"].edges),
                                     n_bins=args.mt_bins)
        cl, row = closure_summary(hb, x_cut=x_cut, y_cut=args.deta_cut, mt_edges=mt_edges)
        row.update({
            "model": label, "x_cut": x_cut, "mt_edges": mt_edges.tolist(),
            "auc_svj_event": _binned_auc(hb[{Y_AXIS: sum, "mt": sum}],
                                         hs[{Y_AXIS: sum, "mt": sum}]),
            "auc_svj_jet_recipe": trained["auc"].get(SIGNAL),
            "dcorr_deta_recipe": trained.get(f"distance_correlation_{Y_AXIS}"),
            "train_seconds": round(t_train, 1), "epochs": trained["epochs"],
            "n_background_events": float(hb.sum(flow=True).value),
        })
        plot_abcd_closure(cl, out / f"abcd_closure_{label}.png")
        results["models"][label] = row
        rows.append(row)
        print(f"{label}: trained in {t_train:.0f} s ({trained['epochs']} epochs), "
              f"score cut {x_cut:.4g}", flush=True)

    head = (f"{'model':<16} {'N_A obs':>14} {'N_A pred':>14} {'pull':>6} {'chi2/ndf':>9} "
            f"{'p':>7} {'dCor(s,deta)':>12} {'dCor(s,mT)':>10} {'AUC svj':>8}")
    print(f"\nABCD closure on {QCD_TEST} (background only): score >= cut (eff "
          f"{args.efficiency:g}) x |deta_jj| < {args.deta_cut:g}, per m_T bin")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['model']:<16} {r['observed']:>7.1f} ± {r['observed_err']:<4.1f} "
              f"{r['predicted']:>7.1f} ± {r['predicted_err']:<4.1f} {r['integrated_pull']:>6.2f} "
              f"{r['chi2']:>5.1f}/{r['ndf']:<3d} {r['p_value']:>7.3f} {r['dcorr_deta']:>12.4f} "
              f"{r['dcorr_mt']:>10.4f} {r['auc_svj_event']:>8.3f}")
    for r in rows:
        print(f"{r['model']}: per-bin pulls {r['pulls']} at m_T edges {r['mt_edges']}")
    results["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "abcd.json").write_text(json.dumps(results, indent=2, default=float))
    print(f"total {results['seconds']:.0f} s; wrote {out / 'abcd.json'}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
