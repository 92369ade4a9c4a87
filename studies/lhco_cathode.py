"""CATHODE-style weakly supervised search on the LHCO-like sample: flow vs cVAE templates.

    python studies/lhco_cathode.py --data /work/data/lhco/r1 [--signal lhco_xy2]

Reads every completed file (its provenance JSON exists) of ``lhco_qcd`` and the signal dataset
written by ``coffea-ad generate lhco``, computes the LHCO inputs with
:func:`coffea_ad.nn.data.lhco_rows` (cached per file), and prints:

1. the sample: events in the SR and sidebands;
2. template fidelity: out-of-fold AUC of a classifier of template vs true SR background;
3. max SIC and SIC at fixed background efficiency vs injected S/B for CATHODE with the flow,
   CATHODE with the cVAE, the idealized classifier (data vs true background) and the
   supervised one, every score out of fold.

The density estimators are fitted once, on the sidebands of the data with the largest
injection (the most signal contamination any row of the scan sees); the classifiers are
retrained at every S/B.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from coffea_ad.nn.data import LHCO_FEATURES, LHCO_FEATURES_TAU32, iter_events, lhco_rows
from coffea_ad.stats.roc import max_sic
from coffea_ad.stats.weak import kfold_classifier, region_masks, sic_at_background_efficiency


def load(data: Path, dataset: str, tau32: bool, cache: Path) -> dict[str, np.ndarray]:
    parts = []
    for prov in sorted((data / dataset).glob(f"{dataset}_*.json")):
        root = prov.with_suffix(".root")
        meta = json.loads(prov.read_text())
        key = cache / f"{dataset}_{meta['index']:04d}_{meta['sha256'][:12]}_{int(tau32)}.npz"
        if not key.is_file():
            fs = {dataset: {"files": {str(root): "Events"}, "metadata": {}}}
            (_, _, events), = list(iter_events(fs))
            t = lhco_rows(events, tau32=tau32)
            tmp = key.with_name(key.name + ".part.npz")
            np.savez(tmp, **t)
            tmp.replace(key)
        with np.load(key) as z:
            t = {k: z[k] for k in z.files}
        t["event"] = t["event"] + meta["first_event"]  # unique ids across files
        parts.append(t)
    if not parts:
        raise SystemExit(f"no completed files of {dataset} under {data}")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def fit_estimator(kind: str, x: np.ndarray, m: np.ndarray, *, seed: int, epochs: int,
                  batch: int) -> object:
    import torch

    from coffea_ad.nn.fit import fit
    from coffea_ad.nn.flow import ConditionalFlow, LatentCVAE

    rng = np.random.default_rng(seed)
    val = rng.random(len(x)) < 0.2
    torch.manual_seed(seed)
    if kind == "flow":
        model = ConditionalFlow(x[~val], m[~val], transforms=3, hidden=(64, 64), bins=8)
    else:
        model = LatentCVAE(x[~val], m[~val], hidden=(64, 64), latent=4, beta=0.5)
    lr, bs = min(1e-3 * batch / 256, 2e-3), batch
    hist = fit(model, [x[~val], m[~val]], [x[val], m[val]], epochs=epochs, batch_size=bs, lr=lr,
               patience=5, lr_patience=2, seed=seed, threads=1, verbose=True)
    if kind == "cvae":
        model.calibrate_noise(x[~val], m[~val])
    print(f"  {kind}: {len(hist.train_loss)} epochs, best val loss {min(hist.val_loss):.4f}")
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/data/lhco/r1"))
    ap.add_argument("--signal", default="lhco_xy2")
    ap.add_argument("--sr", type=float, nargs=2, default=(3300.0, 3700.0))
    ap.add_argument("--window", type=float, nargs=2, default=(3000.0, 4300.0))
    ap.add_argument("--tau32", action="store_true", help="add tau32 of both jets (6 inputs)")
    ap.add_argument("--sb", type=float, nargs="+", default=[0.0, 0.002, 0.004, 0.006, 0.01, 0.02])
    ap.add_argument("--headline", type=float, default=0.006)
    ap.add_argument("--oversample", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--ensemble", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--estimators", nargs="+", default=["flow", "cvae"])
    args = ap.parse_args()
    t0 = time.perf_counter()
    cache = args.data / "cache"
    cache.mkdir(exist_ok=True)
    bkg = load(args.data, "lhco_qcd", args.tau32, cache)
    sig = load(args.data, args.signal, args.tau32, cache)
    names = LHCO_FEATURES_TAU32 if args.tau32 else LHCO_FEATURES
    b_sr, b_sb = region_masks(bkg["mjj"], args.sr, args.window)
    s_sr, s_sb = region_masks(sig["mjj"], args.sr, args.window)
    n_b_sr = int(b_sr.sum())
    print(f"inputs {list(names)}; background rows (pT_J1 > 1.2 TeV): {len(bkg['mjj'])}, "
          f"SR {n_b_sr}, SB {int(b_sb.sum())} (window {args.window}); signal {args.signal}: "
          f"{len(sig['mjj'])} rows, SR {int(s_sr.sum())}, SB {int(s_sb.sum())}")

    rng = np.random.default_rng(args.seed)
    sig_idx = rng.permutation(np.flatnonzero(s_sr | s_sb))
    # the injection pool: enough SR signal for the largest S/B; the rest is for evaluation only
    max_inj = round(max(args.sb) * n_b_sr)
    cum_sr = np.cumsum(s_sr[sig_idx])
    n_pool = int(np.searchsorted(cum_sr, max_inj) + 1) if max_inj > 0 else 0
    pool, evaluation = sig_idx[:n_pool], sig_idx[n_pool:]
    ev_sr = evaluation[s_sr[evaluation]]
    print(f"signal: injection pool {len(pool)} rows ({int(s_sr[pool].sum())} in SR), "
          f"evaluation {len(ev_sr)} SR rows (never injected nor trained on)")
    if len(ev_sr) < 200:
        raise SystemExit("too few evaluation signal events in the SR; generate more signal")

    def injected(sb_ratio: float) -> np.ndarray:
        n = round(sb_ratio * n_b_sr)
        if n == 0:
            return pool[:0]
        return pool[: int(np.searchsorted(cum_sr[:n_pool], n) + 1)]

    # density estimators: sidebands of the data with the largest injection
    inj_max = injected(max(args.sb))
    x_sb = np.concatenate([bkg["x"][b_sb], sig["x"][inj_max][s_sb[inj_max]]])
    m_sb = np.concatenate([bkg["mjj"][b_sb], sig["mjj"][inj_max][s_sb[inj_max]]])
    print(f"\nfitting the density estimators on {len(x_sb)} SB rows "
          f"({int(s_sb[inj_max].sum())} signal)")
    models = {}
    for kind in args.estimators:
        t1 = time.perf_counter()
        models[kind] = fit_estimator(kind, x_sb, m_sb, seed=args.seed, epochs=args.epochs,
                                     batch=args.batch)
        print(f"  {kind} fitted in {time.perf_counter() - t1:.0f} s")

    # sampler conditioning: template m_jj-dependence in the SB vs data
    x_sr_b, m_sr_b = bkg["x"][b_sr], bkg["mjj"][b_sr]
    print("\nTemplate fidelity (background only): out-of-fold AUC, template vs true SR background"
          " (0.5 = perfect; target <= 0.55)")
    templates_b = {}
    for kind, model in models.items():
        rep = np.repeat(m_sr_b, args.oversample)
        t = model.sample(rep, seed=args.seed + 1)
        templates_b[kind] = t
        res = kfold_classifier(t, x_sr_b, k=args.folds, seed=args.seed, ensemble=1)
        means = " ".join(f"{n}={a:.3g}/{b:.3g}" for n, a, b in
                         zip(names, t.mean(0), x_sr_b.mean(0), strict=True))
        print(f"  {kind:5s} AUC = {res.auc:.4f}   means template/data: {means}")
    # a sideband closure of the same kind (the estimators saw these rows: an optimistic check)
    for kind, model in models.items():
        t = model.sample(m_sb, seed=args.seed + 2)
        res = kfold_classifier(t, x_sb, k=args.folds, seed=args.seed, ensemble=1)
        print(f"  {kind:5s} SB closure AUC (training rows) = {res.auc:.4f}")

    effs = [0.2, 0.1, 0.05, 0.02, 0.01]
    rows = []
    for ratio in args.sb:
        inj = injected(ratio)
        inj_sr = inj[s_sr[inj]]
        x_data = np.concatenate([x_sr_b, sig["x"][inj_sr]])
        m_data = np.concatenate([m_sr_b, sig["mjj"][inj_sr]])
        is_sig = np.r_[np.zeros(n_b_sr, bool), np.ones(len(inj_sr), bool)]
        extra = {"sig": sig["x"][ev_sr]}
        results = {}
        for kind, model in models.items():
            t = model.sample(np.repeat(m_data, args.oversample), seed=args.seed + 3)
            results[f"CATHODE-{kind}"] = kfold_classifier(
                x_data, t, k=args.folds, seed=args.seed, extra=extra, ensemble=args.ensemble)
        # idealized: data vs the true background rows themselves; an event sits in both classes,
        # so folds are by event id and a held-out row was seen by its model in neither class
        ids_data = np.r_[bkg["event"][b_sr], -1 - np.arange(len(inj_sr))]
        results["idealized"] = kfold_classifier(
            x_data, x_sr_b, k=args.folds, seed=args.seed, groups1=ids_data,
            groups0=bkg["event"][b_sr], extra=extra, ensemble=args.ensemble)
        for name, res in results.items():
            sb_scores, ss_scores = res.score1[~is_sig], res.extra["sig"]
            try:
                wp = max_sic(sb_scores, ss_scores, max_rel_bkg_uncertainty=0.2)
                best = wp.sic
            except ValueError:
                best = float("nan")
            sics = sic_at_background_efficiency(sb_scores, ss_scores, effs)
            rows.append((ratio, len(inj_sr), name, res.auc, best, sics))
    # supervised: evaluation signal vs SR background, out of fold (independent of S/B)
    sup = kfold_classifier(sig["x"][ev_sr], x_sr_b, k=args.folds, seed=args.seed,
                           ensemble=args.ensemble)
    wp = max_sic(sup.score0, sup.score1, max_rel_bkg_uncertainty=0.2)
    sup_sics = sic_at_background_efficiency(sup.score0, sup.score1, effs)

    print(f"\nSIC (max: >= 25 background events passing; at fixed background efficiency) "
          f"in the SR, {n_b_sr} background events; S/B = injected SR signal / SR background")
    head = " ".join(f"eB={e:<5g}" for e in effs)
    print(f"{'S/B':>6} {'N_S':>5} {'method':16s} {'AUC':>6} {'maxSIC':>7}  {head}")
    for ratio, n_s, name, auc_, best, sics in rows:
        cols = " ".join(f"{v:8.2f}" for v in sics)
        print(f"{ratio:6.3%} {n_s:5d} {name:16s} {auc_:6.3f} {best:7.2f}  {cols}")
    cols = " ".join(f"{v:8.2f}" for v in sup_sics)
    print(f"{'any':>6} {len(ev_sr):5d} {'supervised':16s} {sup.auc:6.3f} {wp.sic:7.2f}  {cols}")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
