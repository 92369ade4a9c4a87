"""How much the quantile-regression (QR) anomaly category gains over the inclusive bump hunt.

    python studies/qr_gain.py --data /work/data/lhco/r1 --model models/lhco_jet_ae.onnx

The event score is the jet-level model's score of the two leading AK8 jets combined
(``--combine min``: both jets anomalous, as CMS's VAE-QR; or ``max``). The background
``lhco_qcd`` is split in two halves by event: half A fixes the m_jj-dependent thresholds at
the background quantile ``--quantile`` (:func:`coffea_ad.stats.quantile.quantile_thresholds`),
half B is the "data". For each injected signal count (W' 3.5 TeV -> X Y, 2-prong) and each of
``--toys`` toys (B's bin counts Poisson-resampled around their smooth background fit, a
random signal subset injected) the dijet-function S+B fit (signal template = the signal MC's
m_jj shape in that category, normalised so that mu = 1 is the injection) is run on the
inclusive spectrum and on the QR category; printed: median local significance of each, their
ratio, and the mean and width of the mu pulls (mu - 1) / sigma_mu.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from coffea_ad.inference import OnnxScorer
from coffea_ad.nn.data import dijet_score_rows, iter_events
from coffea_ad.stats.bumphunt import fit_dijet_background, fit_signal_plus_background
from coffea_ad.stats.quantile import quantile_thresholds, thresholds_to_correctionlib


def load(data: Path, dataset: str, scorer: OnnxScorer, combine: str, cache: Path,
         max_files: int) -> dict[str, np.ndarray]:
    parts = []
    from coffea_ad.inference.contract import file_sha256

    tag = f"{scorer.contract.name}_{file_sha256(scorer.model_path)[:10]}"
    for prov in sorted((data / dataset).glob(f"{dataset}_*.json"))[:max_files]:
        meta = json.loads(prov.read_text())
        key = cache / f"qr_{tag}_{combine}_{dataset}_{meta['index']:04d}_{meta['sha256'][:12]}.npz"
        if not key.is_file():
            fs = {dataset: {"files": {str(prov.with_suffix('.root')): "Events"}, "metadata": {}}}
            (_, _, events), = list(iter_events(fs))
            t = dijet_score_rows(events, scorer=scorer, combine=combine, min_pt=300.0)
            tmp = key.with_name(key.name + ".part.npz")
            np.savez(tmp, **t)
            tmp.replace(key)
        with np.load(key) as z:
            t = {k: z[k] for k in z.files}
        t["event"] = t["event"] + meta["first_event"]
        parts.append(t)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/data/lhco/r1"))
    ap.add_argument("--model", type=Path, default=Path("models/lhco_jet_ae.onnx"))
    ap.add_argument("--combine", default="min", choices=["min", "max", "sum"])
    ap.add_argument("--quantile", type=float, default=0.9)
    ap.add_argument("--inject", type=int, nargs="+", default=[150, 300, 600])
    ap.add_argument("--toys", type=int, default=40)
    ap.add_argument("--range", type=float, nargs=2, default=(3000.0, 4400.0))
    ap.add_argument("--bin", type=float, default=50.0)
    ap.add_argument("--max-files", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-thresholds", type=Path, default=None,
                    help="also write the thresholds at quantiles 0.5, 0.9, 0.99 (half A) as "
                         "the bump-hunt processor's correctionlib JSON")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cache = args.data / "cache"
    cache.mkdir(exist_ok=True)
    scorer = OnnxScorer(args.model)
    bkg = load(args.data, "lhco_qcd", scorer, args.combine, cache, args.max_files)
    sig = load(args.data, "lhco_xy2", scorer, args.combine, cache, args.max_files)
    edges = np.arange(args.range[0], args.range[1] + 0.5 * args.bin, args.bin)
    sqrt_s = 13600.0
    rng = np.random.default_rng(args.seed)
    half = (bkg["event"] % 2) == 0  # A: thresholds, B: data
    thr = quantile_thresholds(bkg["score"][half], bkg["mjj"][half], quantiles=[args.quantile],
                              mass_edges=edges, degree=2)
    if args.write_thresholds is not None:
        shipped = quantile_thresholds(bkg["score"][half], bkg["mjj"][half],
                                      quantiles=[0.5, 0.9, 0.99], mass_edges=edges, degree=2)
        thresholds_to_correctionlib(
            shipped, path=args.write_thresholds,
            description=f"{args.combine} of the two leading jets' {args.model.name} scores: "
            f"background quantiles 0.5/0.9/0.99 vs m_jj from half of lhco_qcd (even event "
            f"numbers), {edges[0]:g}-{edges[-1]:g} GeV, quadratic fit")
        print(f"wrote {args.write_thresholds}")
    b_pass = thr.categories(bkg["score"], bkg["mjj"]) == 1
    s_pass = thr.categories(sig["score"], sig["mjj"]) == 1
    in_range = (sig["mjj"] >= edges[0]) & (sig["mjj"] < edges[-1])
    eff_b = b_pass[~half].mean()
    eff_s = s_pass[in_range].mean()
    print(f"model {args.model.name}, combine={args.combine}, quantile {args.quantile}: "
          f"background efficiency (half B) {eff_b:.3f}, signal efficiency in the fit range "
          f"{eff_s:.3f} (SIC {eff_s / np.sqrt(eff_b):.2f}); background half B "
          f"{int((~half).sum())} events, signal pool {int(in_range.sum())}")

    data_b = {
        "inclusive": np.histogram(bkg["mjj"][~half], edges)[0].astype(float),
        "QR": np.histogram(bkg["mjj"][~half & b_pass], edges)[0].astype(float),
    }
    smooth = {}
    for cat, counts in data_b.items():
        fit = fit_dijet_background(counts, edges, sqrt_s=sqrt_s, n_params=4)
        smooth[cat] = fit.expected
        print(f"  {cat:9s} background-only fit: deviance/ndf = {fit.deviance:.1f}/{fit.ndf}, p = {fit.p_value:.3f}")
    pool = np.flatnonzero(in_range)
    print(f"\n{'N_inj':>6} {'category':9s} {'S in cat':>8} {'Z_med':>6} {'Z_mean':>6} "
          f"{'pull mean':>9} {'pull std':>8} {'fits ok':>7}")
    for n_inj in args.inject:
        res = {cat: {"z": [], "pull": [], "ok": 0} for cat in data_b}
        for _ in range(args.toys):
            pick = rng.choice(pool, size=n_inj, replace=False)
            for cat in data_b:
                passing = np.ones(len(sig["mjj"]), bool) if cat == "inclusive" else s_pass
                injected = pick[passing[pick]]
                counts = rng.poisson(smooth[cat]) + np.histogram(sig["mjj"][injected], edges)[0]
                # template: the category's signal m_jj shape, normalised to the expected number
                # of injected events that land in this category (mu = 1 is the truth)
                shape = np.histogram(sig["mjj"][pool[passing[pool]]], edges)[0].astype(float)
                expect = n_inj * passing[pool].mean()
                template = shape / shape.sum() * expect
                try:
                    f = fit_signal_plus_background(counts.astype(float), edges, signal=template,
                                                   sqrt_s=sqrt_s, n_params=4)
                except (RuntimeError, ValueError):
                    continue
                if not f.valid or not f.mu_err > 0:
                    continue
                res[cat]["ok"] += 1
                res[cat]["z"].append(f.significance)
                res[cat]["pull"].append((f.mu - 1.0) / f.mu_err)
        for cat, r in res.items():
            z, p = np.array(r["z"]), np.array(r["pull"])
            n_cat = n_inj * (1.0 if cat == "inclusive" else eff_s)
            print(f"{n_inj:6d} {cat:9s} {n_cat:8.0f} {np.median(z):6.2f} {z.mean():6.2f} "
                  f"{p.mean():9.2f} {p.std():8.2f} {r['ok']:4d}/{args.toys}")
        zi, zq = np.median(res["inclusive"]["z"]), np.median(res["QR"]["z"])
        print(f"{'':6s} gain Z_QR / Z_inclusive (medians) = {zq / max(zi, 1e-9):.2f}")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
