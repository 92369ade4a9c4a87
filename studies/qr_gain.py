"""How much the quantile-regression (QR) anomaly category gains over the inclusive bump hunt.

    python studies/qr_features.py     # once: per-file jet features of the sample (~1 min)
    python studies/qr_gain.py --model M.onnx --combine min --toys 200 --inject 400 800 1600

Events (``lhco_qcd`` files, sorted by index, 2 000 events each; disjoint roles):

- files ``[0, --train-files)``: reserved for training the jet model, never read here;
- the next ``--threshold-files``: fix the m_jj-dependent score threshold at the background
  quantile ``--quantile`` (:func:`coffea_ad.stats.quantile.quantile_thresholds`);
- the rest: the "data". Its m_jj spectra in the QR category (score above the threshold) and
  in the complement are fitted with the dijet function; these smooth fits are the toys' truth.

Signal (``--signal``, W' 3.5 TeV -> X(500) Y(100)): even event numbers give the fit's signal
templates (and train the supervised reference), odd ones are the injection pool. For each
injected count N (signal events in the fit range) and each toy: pass and fail background
counts are Poisson draws around their smooth fits (inclusive = pass + fail, so the two fits
of a toy see the same events), N signal events are drawn from the pool and added to the
inclusive spectrum, those passing the threshold to the QR spectrum; then the dijet-function
S+B fit (template: the signal's m_jj shape in that category, normalised so that mu = 1 is the
expected injection) runs on both. Printed per N: median local significance of each, the gain
Z_QR / Z_inclusive (ratio of medians, with its 16-84 % spread from resampling the toys), mu
pulls (mu - 1) / sigma_mu (N = 0: background-only toys, mu in units of a 1000-event
template, pulls mu / sigma_mu and the fractions of Z above 1 and 2), and every failed fit (raised, invalid minimum, or no error on mu):
none is dropped silently.

Scores (``--score``): ``onnx`` (``--model``, a jet-level model whose contract features are
read from the feature cache) or ``supervised``: a gradient-boosted jet classifier trained on
the training files' QCD jets against the even-event signal jets (mass, msoftdrop, tau21,
tau32): not an anomaly detector, the ceiling of what these jet inputs can do. The event score
is the ``--combine`` (min: both jets anomalous, as CMS's VAE-QR; or max) of the two jets'.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

from coffea_ad.stats.bumphunt import fit_dijet_background, fit_signal_plus_background
from coffea_ad.stats.quantile import category_shape_test, quantile_thresholds
from coffea_ad.stats.roc import auc

SQRT_S = 13600.0
SUPERVISED_FEATURES = ("mass", "msoftdrop", "tau21", "tau32")


def load(features: Path, dataset: str) -> dict[str, np.ndarray]:
    """Concatenated feature cache of ``studies/qr_features.py``, with a ``file`` column."""
    paths = sorted(p for p in features.glob(f"{dataset}_*_v2.npz"))
    if not paths:
        msg = f"qr_gain: no feature cache {features}/{dataset}_*_v2.npz; run qr_features.py"
        raise SystemExit(msg)
    parts = []
    for p in paths:
        with np.load(p) as z:
            t = {k: z[k] for k in z.files if z[k].ndim == 1}
        t["file"] = np.full(t["mjj"].size, int(p.name.split("_")[2]))
        parts.append(t)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def take(d: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[mask] for k, v in d.items()}


def jet_matrix(d: dict[str, np.ndarray], names, j: int) -> np.ndarray:
    return np.stack([d[f"{n}_j{j}"] for n in names], axis=1).astype(np.float32)


class JetScore:
    """Per-jet score of jets 1 and 2 of each event, from an ONNX model or the supervised
    reference."""

    def __init__(self, kind: str, model: Path | None, train_bkg, train_sig, seed: int):
        self.kind = kind
        if kind == "onnx":
            from coffea_ad.inference import OnnxScorer

            self.scorer = OnnxScorer(model)
            self.names = list(self.scorer.contract.inputs[0].features)
            self.label = f"{model.name} ({', '.join(self.names)})"
        else:
            from sklearn.ensemble import HistGradientBoostingClassifier

            self.names = list(SUPERVISED_FEATURES)
            xb = np.concatenate([jet_matrix(train_bkg, self.names, j) for j in (1, 2)])
            xs = np.concatenate([jet_matrix(train_sig, self.names, j) for j in (1, 2)])
            rng = np.random.default_rng(seed)
            xb = xb[rng.permutation(len(xb))[: 4 * len(xs)]]
            self.clf = HistGradientBoostingClassifier(max_iter=200, random_state=seed).fit(
                np.concatenate([xb, xs]), np.r_[np.zeros(len(xb)), np.ones(len(xs))])
            self.label = (f"supervised jet classifier ({', '.join(self.names)}; "
                          f"{len(xb)} QCD vs {len(xs)} signal jets)")

    def __call__(self, d: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for j in (1, 2):
            x = jet_matrix(d, self.names, j)
            if self.kind == "onnx":
                out.append(np.asarray(self.scorer(x), dtype=np.float64))
            else:
                out.append(self.clf.predict_proba(x)[:, 1])
        return out[0], out[1]


def spread(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, n: int = 2000
           ) -> tuple[float, float]:
    """16 and 84 % points of median(b) / median(a) over paired resamplings of the toys."""
    idx = rng.integers(0, a.size, size=(n, a.size))
    r = np.median(b[idx], axis=1) / np.maximum(np.median(a[idx], axis=1), 1e-9)
    lo, hi = np.percentile(r, [16, 84])
    return float(lo), float(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=Path, default=Path("/work/data/qrgain/features"))
    ap.add_argument("--score", default="onnx", choices=["onnx", "supervised"])
    ap.add_argument("--model", type=Path, default=Path("models/lhco_jet_ae.onnx"))
    ap.add_argument("--signal", default="lhco_xy2", choices=["lhco_xy2", "lhco_xy3"])
    ap.add_argument("--combine", default="min", choices=["min", "max"])
    ap.add_argument("--quantile", type=float, default=0.9)
    ap.add_argument("--inject", type=int, nargs="+", default=[400, 800, 1600, 2400])
    ap.add_argument("--toys", type=int, default=100)
    ap.add_argument("--range", type=float, nargs=2, default=(3000.0, 4400.0))
    ap.add_argument("--bin", type=float, default=50.0)
    ap.add_argument("--n-params", type=int, default=4, choices=[3, 4, 5],
                    help="parameters of the dijet function")
    ap.add_argument("--train-files", type=int, default=100)
    ap.add_argument("--threshold-files", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    bkg = load(args.features, "lhco_qcd")
    sig = load(args.features, args.signal)
    first_thr = args.train_files
    first_data = args.train_files + args.threshold_files
    thr_set = take(bkg, (bkg["file"] >= first_thr) & (bkg["file"] < first_data))
    data = take(bkg, bkg["file"] >= first_data)
    sig_a = take(sig, sig["event"] % 2 == 0)
    sig_b = take(sig, sig["event"] % 2 == 1)
    train_bkg = take(bkg, bkg["file"] < first_thr) if args.score == "supervised" else None
    scorer = JetScore(args.score, args.model, train_bkg, sig_a, args.seed)
    comb = {"min": np.minimum, "max": np.maximum}[args.combine]
    scores = {}
    for name, d in (("thr", thr_set), ("data", data), ("sig_a", sig_a), ("sig_b", sig_b)):
        s1, s2 = scorer(d)
        scores[name] = (s1, s2, comb(s1, s2))
    edges = np.arange(args.range[0], args.range[1] + 0.5 * args.bin, args.bin)
    thr = quantile_thresholds(scores["thr"][2], thr_set["mjj"], quantiles=[args.quantile],
                              mass_edges=edges, degree=2)

    def passes(name: str, d: dict[str, np.ndarray]) -> np.ndarray:
        return thr.categories(scores[name][2], d["mjj"]) == 1

    def in_range(d: dict[str, np.ndarray]) -> np.ndarray:
        return (d["mjj"] >= edges[0]) & (d["mjj"] < edges[-1])

    print(f"score: {scorer.label}, event score = {args.combine} of the two leading jets; "
          f"signal {args.signal}; QR threshold at background quantile {args.quantile} vs m_jj "
          f"from {len(thr_set['mjj'])} events (files {first_thr}-{first_data - 1}); data "
          f"{len(data['mjj'])} events (files {first_data}-); fit {edges[0]:g}-{edges[-1]:g} "
          f"GeV, {args.bin:g} GeV bins, {args.n_params}-parameter dijet function, sqrt(s) = {SQRT_S:g}")

    # score performance: jet AUC; event SIC at the QR cut, inclusive and in leading-jet pT bins
    jb = np.concatenate(scores["data"][:2])
    js = np.concatenate(scores["sig_b"][:2])
    jet_auc = auc(jb, js)
    pb, ps = passes("data", data), passes("sig_b", sig_b)
    rb, rs = in_range(data), in_range(sig_b)
    eff_b, eff_s = pb[rb].mean(), ps[rs].mean()
    print(f"jet AUC (signal jets vs data QCD jets) {jet_auc:.3f}; at the QR cut, in the fit "
          f"range: background efficiency {eff_b:.4f}, signal {eff_s:.3f}, "
          f"SIC {eff_s / np.sqrt(eff_b):.2f}")
    pt_edges = [1200.0, 1400.0, 1600.0, 1800.0, np.inf]
    row = []
    for lo, hi in itertools.pairwise(pt_edges):
        bb = rb & (data["pt_j1"] >= lo) & (data["pt_j1"] < hi)
        ss = rs & (sig_b["pt_j1"] >= lo) & (sig_b["pt_j1"] < hi)
        if bb.sum() == 0 or ss.sum() == 0:
            continue
        eb, es = pb[bb].mean(), ps[ss].mean()
        row.append(f"[{lo:g}, {hi:g}): eff_b {eb:.3f} eff_s {es:.3f} SIC {es / np.sqrt(eb):.2f} "
                   f"(n_b {bb.sum()}, n_s {ss.sum()})")
    print("  in leading-jet pT bins (GeV): " + "; ".join(row))

    counts = {
        "inclusive": np.histogram(data["mjj"], edges)[0].astype(float),
        "QR": np.histogram(data["mjj"][pb], edges)[0].astype(float),
        "fail": np.histogram(data["mjj"][~pb], edges)[0].astype(float),
    }
    chi2, ndf, p_flat = category_shape_test(counts["QR"], counts["inclusive"])
    print(f"QR pass fraction flat in m_jj (data): chi2/ndf = {chi2:.1f}/{ndf}, p = {p_flat:.3f}")
    smooth = {}
    for cat, n in counts.items():
        fit = fit_dijet_background(n, edges, sqrt_s=SQRT_S, n_params=args.n_params)
        smooth[cat] = fit.expected
        print(f"  {cat:9s} data: {int(n.sum())} events, background-only fit deviance/ndf = "
              f"{fit.deviance:.1f}/{fit.ndf}, p = {fit.p_value:.3f}, valid {fit.valid}")

    # templates from the even-event signal half; mu = 1 is the expected injection
    pa, ra = passes("sig_a", sig_a), in_range(sig_a)
    shape = {"inclusive": np.histogram(sig_a["mjj"][ra], edges)[0].astype(float),
             "QR": np.histogram(sig_a["mjj"][ra & pa], edges)[0].astype(float)}
    eff_template = pa[ra].mean()
    # spurious signal: the S+B fit on the data spectra themselves (no injection, no toy)
    spur = []
    for cat, eff in (("inclusive", 1.0), ("QR", eff_template)):
        f = fit_signal_plus_background(counts[cat], edges, signal=shape[cat] / shape[cat].sum(),
                                       sqrt_s=SQRT_S, n_params=args.n_params)
        spur.append(f"{cat} {f.mu:+.0f} +- {f.mu_err:.0f} events in the category "
                    f"(= {f.mu / eff:+.0f} injected), Z = {f.signed_significance:+.2f}")
    print("spurious signal on the data (S+B fit, no injection): " + "; ".join(spur))
    pool = np.flatnonzero(rs)
    print(f"signal: template events {int(ra.sum())} (QR efficiency {eff_template:.3f}), "
          f"injection pool {pool.size}; {args.toys} toys per strength\n")
    head = (f"{'N_inj':>6} {'S_QR':>6} {'Z_incl':>6} {'Z_QR':>6} {'gain':>5} {'[16%, 84%]':>13} "
            f"{'P(QR>incl)':>10} {'pull incl':>12} {'pull QR':>12} {'failed incl/QR':>14}")
    print(head)
    failures: list[str] = []
    for n_inj in args.inject:
        if n_inj > pool.size:
            msg = f"qr_gain: --inject {n_inj} exceeds the signal pool of {pool.size} events"
            raise SystemExit(msg)
        res = {c: {"z": [], "pull": [], "failed": 0} for c in ("inclusive", "QR")}
        s_qr = []
        for toy in range(args.toys):
            n_pass = rng.poisson(smooth["QR"])
            n_fail = rng.poisson(smooth["fail"])
            pick = pool[rng.choice(pool.size, size=n_inj, replace=False)]
            s_inc = np.histogram(sig_b["mjj"][pick], edges)[0]
            s_pass = np.histogram(sig_b["mjj"][pick[ps[pick]]], edges)[0]
            s_qr.append(s_pass.sum())
            toy_counts = {"inclusive": n_pass + n_fail + s_inc, "QR": n_pass + s_pass}
            # N = 0 (background only): mu in units of a nominal 1000-event template, truth 0
            norm = float(n_inj) if n_inj > 0 else 1000.0
            mu_true = 1.0 if n_inj > 0 else 0.0
            expect = {"inclusive": norm, "QR": norm * eff_template}
            for cat, n in toy_counts.items():
                template = shape[cat] / shape[cat].sum() * expect[cat]
                try:
                    f = fit_signal_plus_background(n.astype(float), edges, signal=template,
                                                   sqrt_s=SQRT_S, n_params=args.n_params)
                    why = None if f.valid and f.background_only.valid and f.mu_err > 0 else (
                        f"valid S+B {f.valid}, background-only {f.background_only.valid}, "
                        f"mu_err {f.mu_err}")
                except (RuntimeError, ValueError) as err:
                    f, why = None, f"{type(err).__name__}: {err}"
                if why is not None:  # counted and reported, never silently dropped
                    res[cat]["failed"] += 1
                    failures.append(f"N={n_inj} toy {toy} {cat}: {why}")
                    continue
                res[cat]["z"].append(f.significance)
                res[cat]["pull"].append((f.mu - mu_true) / f.mu_err)
        zi, zq = np.array(res["inclusive"]["z"]), np.array(res["QR"]["z"])
        gain = np.median(zq) / max(np.median(zi), 1e-9)
        if zi.size == zq.size:
            lo, hi = spread(zi, zq, rng)
            p_better = np.mean(zq > zi)
        else:  # a failed fit unpairs the toys: no paired spread
            lo = hi = p_better = np.nan
        pi, pq = np.array(res["inclusive"]["pull"]), np.array(res["QR"]["pull"])
        print(f"{n_inj:6d} {np.mean(s_qr):6.0f} {np.median(zi):6.2f} {np.median(zq):6.2f} "
              f"{gain:5.2f} [{lo:5.2f}, {hi:5.2f}] {p_better:10.2f} "
              f"{pi.mean():+5.2f}/{pi.std():4.2f} {pq.mean():+5.2f}/{pq.std():4.2f} "
              f"{res['inclusive']['failed']:6d}/{res['QR']['failed']}", flush=True)
        if n_inj == 0:  # null toys: P(Z > 1) = Phi(-1) = 0.159, P(Z > 2) = 0.023 asymptotically
            print("       background only: P(Z>1), P(Z>2) inclusive "
                  f"{np.mean(zi > 1):.3f}, {np.mean(zi > 2):.3f}; QR {np.mean(zq > 1):.3f}, "
                  f"{np.mean(zq > 2):.3f}", flush=True)
    print(f"\nfailed fits: {len(failures)} of {2 * args.toys * len(args.inject)}")
    for line in failures:
        print("  " + line)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
