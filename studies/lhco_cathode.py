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
retrained at every S/B. Each estimator is an ensemble as in CATHODE: ``--fits`` independently
seeded fits (own initial weights and 80/20 split), of each the ``--snapshots`` epochs with the
lowest validation loss; the template is their equal mixture
(:class:`coffea_ad.nn.flow.EnsembleSampler`). With ``--store`` the fitted snapshots are kept
(npz state dicts) and reused, so a scan can be split over several runs
(``--fidelity no`` skips the fidelity AUCs there); ``--seed`` with a fixed ``--fit-seed``
varies the injection, templates and classifiers around the same fits.

4. beyond kinematics: max SIC in the two halves of the leading-jet p_T, and whether the SR
   background kept by the classifier's cut keeps the m_jj shape (chi-square p-value).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from coffea_ad.nn.data import LHCO_FEATURES, LHCO_FEATURES_TAU32, iter_events, lhco_rows
from coffea_ad.nn.flow import EnsembleSampler
from coffea_ad.stats.roc import max_sic
from coffea_ad.stats.weak import kfold_classifier, region_masks, sic_at_background_efficiency


def load(data: Path, dataset: str, tau32: bool, cache: Path) -> dict[str, np.ndarray]:
    parts = []
    for prov in sorted((data / dataset).glob(f"{dataset}_*.json")):
        root = prov.with_suffix(".root")
        meta = json.loads(prov.read_text())
        key = cache / f"{dataset}_{meta['index']:04d}_{meta['sha256'][:12]}_{int(tau32)}_v2.npz"
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


def _state_npz(model) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def _load_state(model, path: Path) -> None:
    import torch

    with np.load(path) as z:  # plain arrays, no pickle
        model.load_state_dict({k: torch.as_tensor(z[k]) for k in z.files})


def build_estimator(kind: str, x: np.ndarray, m: np.ndarray, args) -> object:
    from coffea_ad.nn.flow import ConditionalFlow, LatentCVAE

    if kind == "flow":
        return ConditionalFlow(x, m, transforms=args.flow_transforms,
                               hidden=tuple(args.flow_hidden), bins=args.flow_bins)
    return LatentCVAE(x, m, hidden=tuple(args.cvae_hidden), latent=args.cvae_latent,
                      beta=args.cvae_beta, prior_components=args.cvae_prior)


def fit_estimator(kind: str, x: np.ndarray, m: np.ndarray, *, seed: int, args,
                  store: Path | None = None) -> object:
    """One fit (seeded split 80/20, seeded initial weights); returns the models of its
    ``args.snapshots`` lowest-validation-loss epochs (CATHODE's epoch ensemble). With
    ``store``, the snapshot weights are saved there (npz) and reused by a later run with the
    same settings."""
    import copy

    import torch

    from coffea_ad.nn.fit import fit, report_epochs

    rng = np.random.default_rng(seed)
    val = rng.random(len(x)) < 0.2
    k = args.snapshots
    paths = None if store is None else [store / f"{kind}_s{seed}_{i}.npz" for i in range(k)]
    if paths is not None and all(q.is_file() for q in paths):
        members = []
        for q in paths:
            mdl = build_estimator(kind, x[~val], m[~val], args)
            _load_state(mdl, q)
            mdl.eval()
            members.append(mdl)
        print(f"  {kind} seed {seed}: {k} snapshots loaded from {store}")
        return members
    torch.manual_seed(seed)
    model = build_estimator(kind, x[~val], m[~val], args)
    snaps: list[tuple[float, int, dict]] = []

    def keep(rep) -> None:
        snaps.append((rep.val_loss, rep.epoch, copy.deepcopy(model.state_dict())))

    epochs = args.epochs if kind == "flow" else args.cvae_epochs
    lr = min(1e-3 * args.batch / 256, 2e-3)
    with report_epochs(keep):
        hist = fit(model, [x[~val], m[~val]], [x[val], m[val]], epochs=epochs,
                   batch_size=args.batch, lr=lr, patience=max(8, k + 2), lr_patience=3,
                   seed=seed, threads=1, verbose=False)
    best = sorted(snaps, key=lambda t: t[0])[:k]
    members = []
    for _, _, state in best:
        mdl = copy.deepcopy(model)
        mdl.load_state_dict(state)
        if kind == "cvae":
            mdl.calibrate_noise(x[~val], m[~val])
            if args.cvae_prior:
                mdl.fit_latent_prior(x[~val], m[~val], seed=seed)
        mdl.eval()
        members.append(mdl)
    print(f"  {kind} seed {seed}: {len(hist.train_loss)} epochs in {hist.seconds:.0f} s, val "
          f"loss first/best {hist.val_loss[0]:.4f}/{min(hist.val_loss):.4f}; ensemble of "
          f"epochs {sorted(e for _, e, _ in best)}", flush=True)
    if paths is not None:
        store.mkdir(parents=True, exist_ok=True)
        for mdl, q in zip(members, paths, strict=True):
            tmp = q.with_name(q.name + ".part.npz")
            np.savez(tmp, **_state_npz(mdl))
            tmp.replace(q)
    return members


def mjj_shape_pvalue(mjj_sel: np.ndarray, mjj_all: np.ndarray,
                     bins: np.ndarray) -> tuple[float, float]:
    """Chi-square p-value that the selected events' m_jj histogram has the shape of all
    events' (multinomial with the full sample's bin fractions), and the largest relative
    deviation of a bin's fraction from the full sample's."""
    from scipy import stats

    h_sel = np.histogram(mjj_sel, bins)[0]
    frac = np.histogram(mjj_all, bins)[0] / len(mjj_all)
    exp = frac * h_sel.sum()
    chi2 = float(((h_sel - exp) ** 2 / np.maximum(exp, 1e-12)).sum())
    dev = float(np.max(np.abs(h_sel / np.maximum(exp, 1e-12) - 1.0)))
    return float(stats.chi2.sf(chi2, len(bins) - 2)), dev


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/data/lhco/r1"))
    ap.add_argument("--signal", default="lhco_xy2")
    ap.add_argument("--sr", type=float, nargs=2, default=(3300.0, 3700.0))
    ap.add_argument("--window", type=float, nargs=2, default=(3000.0, 4300.0))
    ap.add_argument("--tau32", action="store_true", help="add tau32 of both jets (6 inputs)")
    ap.add_argument("--sb", type=float, nargs="+", default=[0.0, 0.002, 0.004, 0.006, 0.01, 0.02])
    ap.add_argument("--pool-sb", type=float, default=None,
                    help="size the injection pool and the SB contamination for this S/B "
                         "(default: the largest of --sb), so that runs over parts of the scan "
                         "share the same density estimators and evaluation signal")
    ap.add_argument("--oversample", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=25, help="flow epochs (max, per fit)")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--ensemble", type=int, default=1, help="classifiers per fold")
    ap.add_argument("--seed", type=int, default=0,
                    help="injection, splits, fits and classifiers")
    ap.add_argument("--fit-seed", type=int, default=None,
                    help="seed of the density-estimator fits and of their SB injection "
                         "(default: --seed); another --seed with the same --fit-seed reuses "
                         "stored fits and varies injection, templates and classifiers")
    ap.add_argument("--fits", type=int, default=3,
                    help="independently seeded fits per density estimator")
    ap.add_argument("--snapshots", type=int, default=5,
                    help="lowest-validation-loss epochs kept per fit (template = equal mixture "
                         "of fits x snapshots)")
    ap.add_argument("--flow-transforms", type=int, default=4)
    ap.add_argument("--flow-hidden", type=int, nargs="+", default=[64, 64])
    ap.add_argument("--flow-bins", type=int, default=8)
    ap.add_argument("--cvae-hidden", type=int, nargs="+", default=[64, 64])
    ap.add_argument("--cvae-latent", type=int, default=4)
    ap.add_argument("--cvae-beta", type=float, default=0.01)
    ap.add_argument("--cvae-prior", type=int, default=10,
                    help="latent prior: 0 = N(0, 1); K > 0 = K-component Gaussian mixture "
                         "fitted to the encoded SB training rows")
    ap.add_argument("--cvae-epochs", type=int, default=40)
    ap.add_argument("--estimators", nargs="+", default=["flow", "cvae"])
    ap.add_argument("--store", type=Path, default=None,
                    help="folder to keep/reuse the fitted snapshots (npz state dicts)")
    ap.add_argument("--sb-closure", action="store_true",
                    help="also the SB closure AUC (estimators' own training region)")
    ap.add_argument("--fidelity", choices=["yes", "no", "only"], default="yes",
                    help="template fidelity AUCs: with the scan, skipped, or nothing else")
    args = ap.parse_args()
    t0 = time.perf_counter()
    clock = {}
    cache = args.data / "cache"
    cache.mkdir(exist_ok=True)
    bkg = load(args.data, "lhco_qcd", args.tau32, cache)
    sig = load(args.data, args.signal, args.tau32, cache)
    clock["read rows"] = time.perf_counter() - t0
    names = LHCO_FEATURES_TAU32 if args.tau32 else LHCO_FEATURES
    b_sr, b_sb = region_masks(bkg["mjj"], args.sr, args.window)
    s_sr, s_sb = region_masks(sig["mjj"], args.sr, args.window)
    n_b_sr = int(b_sr.sum())
    print(f"inputs {list(names)}; background rows (pT_J1 > 1.2 TeV): {len(bkg['mjj'])}, "
          f"SR {n_b_sr}, SB {int(b_sb.sum())} (window {args.window}); signal {args.signal}: "
          f"{len(sig['mjj'])} rows, SR {int(s_sr.sum())}, SB {int(s_sb.sum())}")

    # the injection pool: enough SR signal for the largest S/B; the rest is for evaluation only
    pool_sb = max(args.sb) if args.pool_sb is None else args.pool_sb
    max_inj = round(pool_sb * n_b_sr)

    def draw_pool(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sig_idx = np.random.default_rng(seed).permutation(np.flatnonzero(s_sr | s_sb))
        cum = np.cumsum(s_sr[sig_idx])
        n = int(np.searchsorted(cum, max_inj) + 1) if max_inj > 0 else 0
        return sig_idx[:n], sig_idx[n:], cum[:n]

    pool, evaluation, cum_sr = draw_pool(args.seed)
    ev_sr = evaluation[s_sr[evaluation]]
    print(f"signal: injection pool {len(pool)} rows ({int(s_sr[pool].sum())} in SR), "
          f"evaluation {len(ev_sr)} SR rows (never injected nor trained on)")
    if len(ev_sr) < 200:
        raise SystemExit("too few evaluation signal events in the SR; generate more signal")

    def injected(sb_ratio: float, pool=pool, cum_sr=cum_sr) -> np.ndarray:
        n = round(sb_ratio * n_b_sr)
        if n == 0:
            return pool[:0]
        return pool[: int(np.searchsorted(cum_sr, n) + 1)]

    # density estimators: sidebands of the data with the largest injection (of the fit seed's
    # draw: only its SB rows reach the estimators, and the evaluation signal is SR rows)
    fit_seed = args.seed if args.fit_seed is None else args.fit_seed
    fpool, _, fcum = draw_pool(fit_seed)
    inj_max = injected(pool_sb, fpool, fcum)
    x_sb = np.concatenate([bkg["x"][b_sb], sig["x"][inj_max][s_sb[inj_max]]])
    m_sb = np.concatenate([bkg["mjj"][b_sb], sig["mjj"][inj_max][s_sb[inj_max]]])
    print(f"\nfitting the density estimators on {len(x_sb)} SB rows "
          f"({int(s_sb[inj_max].sum())} signal): {args.fits} seeded fits x {args.snapshots} "
          f"best epochs each", flush=True)
    store = None
    if args.store is not None:
        tag = (f"{args.signal}_pool{pool_sb:g}_seed{fit_seed}_t{int(args.tau32)}_"
               f"e{args.epochs}_b{args.batch}_k{args.snapshots}")
        store = args.store / tag
    models = {}
    for kind in args.estimators:
        t1 = time.perf_counter()
        sub = None if store is None else store / (
            f"flow_{args.flow_transforms}_{'x'.join(map(str, args.flow_hidden))}_"
            f"{args.flow_bins}" if kind == "flow" else
            f"cvae_{'x'.join(map(str, args.cvae_hidden))}_{args.cvae_latent}_{args.cvae_beta:g}"
            f"_p{args.cvae_prior}"
            f"_e{args.cvae_epochs}")
        members = []
        for i in range(args.fits):
            members += fit_estimator(kind, x_sb, m_sb, seed=fit_seed * 100 + i, args=args,
                                     store=sub)
        models[kind] = EnsembleSampler(members)
        clock[f"fit {kind}"] = time.perf_counter() - t1
        print(f"  {kind}: {len(members)} members, {clock[f'fit {kind}']:.0f} s", flush=True)

    x_sr_b, m_sr_b = bkg["x"][b_sr], bkg["mjj"][b_sr]
    t1 = time.perf_counter()
    if args.fidelity == "no":
        models_fid = {}
    else:
        models_fid = models
        print("\nTemplate fidelity (background only): out-of-fold AUC, template vs true SR "
              "background (0.5 = perfect; target <= 0.55); the AUC's spread for a perfect "
              f"template is about {np.sqrt((1 + args.oversample) / (12 * args.oversample * n_b_sr)):.4f}")
    for kind, model in models_fid.items():
        t = model.sample(np.repeat(m_sr_b, args.oversample), seed=args.seed + 1)
        res = kfold_classifier(t, x_sr_b, k=args.folds, seed=args.seed, ensemble=1)
        means = " ".join(f"{n}={a:.3g}/{b:.3g}" for n, a, b in
                         zip(names, t.mean(0), x_sr_b.mean(0), strict=True))
        print(f"  {kind:5s} AUC = {res.auc:.4f}   means template/data: {means}", flush=True)
        # the single first member alone, to show what the ensemble buys
        if len(model.members) > 1:
            t_one = model.members[0].sample(np.repeat(m_sr_b, args.oversample), seed=args.seed + 1)
            r1 = kfold_classifier(t_one, x_sr_b, k=args.folds, seed=args.seed, ensemble=1)
            print(f"  {kind:5s} AUC of one member alone = {r1.auc:.4f}", flush=True)
    if args.sb_closure:
        for kind, model in models.items():
            t = model.sample(m_sb, seed=args.seed + 2)
            res = kfold_classifier(t, x_sb, k=args.folds, seed=args.seed, ensemble=1)
            print(f"  {kind:5s} SB closure AUC (training rows) = {res.auc:.4f}")
    clock["fidelity"] = time.perf_counter() - t1
    if args.fidelity == "only":
        print("\nwall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in clock.items()))
        return

    effs = [0.2, 0.1, 0.05, 0.02, 0.01]
    # leading-jet p_T halves (split at the SR background median) and the m_jj shape check
    pt_cut = float(np.median(bkg["pt_j1"][b_sr]))
    pt_b_lo = bkg["pt_j1"][b_sr] < pt_cut
    pt_s_lo = sig["pt_j1"][ev_sr] < pt_cut
    mjj_bins = np.linspace(args.sr[0], args.sr[1], 9)
    rows, checks = [], []
    t1 = time.perf_counter()
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
            best = _max_sic(sb_scores, ss_scores)
            sics = sic_at_background_efficiency(sb_scores, ss_scores, effs)
            rows.append((ratio, len(inj_sr), name, res.auc, best, sics))
            halves = (_max_sic(sb_scores[pt_b_lo], ss_scores[pt_s_lo]),
                      _max_sic(sb_scores[~pt_b_lo], ss_scores[~pt_s_lo]))
            pvals = []
            for eff in (0.05, 0.01):
                cut = np.quantile(sb_scores, 1.0 - eff)
                pvals.extend(mjj_shape_pvalue(m_sr_b[sb_scores >= cut], m_sr_b, mjj_bins))
            checks.append((ratio, name, *halves, *pvals))
        print(f"  S/B {ratio:.3%} done ({time.perf_counter() - t1:.0f} s)", flush=True)
    clock["classifiers"] = time.perf_counter() - t1
    # supervised: evaluation signal vs SR background, out of fold (independent of S/B)
    t1 = time.perf_counter()
    sup = kfold_classifier(sig["x"][ev_sr], x_sr_b, k=args.folds, seed=args.seed,
                           ensemble=args.ensemble)
    sup_best = _max_sic(sup.score0, sup.score1)
    sup_sics = sic_at_background_efficiency(sup.score0, sup.score1, effs)
    sup_halves = (_max_sic(sup.score0[pt_b_lo], sup.score1[pt_s_lo]),
                  _max_sic(sup.score0[~pt_b_lo], sup.score1[~pt_s_lo]))
    clock["supervised"] = time.perf_counter() - t1

    print(f"\nSIC (max: >= 25 background events passing; at fixed background efficiency) "
          f"in the SR, {n_b_sr} background events; S/B = injected SR signal / SR background")
    head = " ".join(f"eB={e:<5g}" for e in effs)
    print(f"{'S/B':>6} {'N_S':>5} {'method':16s} {'AUC':>6} {'maxSIC':>7}  {head}")
    for ratio, n_s, name, auc_, best, sics in rows:
        cols = " ".join(f"{v:8.2f}" for v in sics)
        print(f"{ratio:6.3%} {n_s:5d} {name:16s} {auc_:6.3f} {best:7.2f}  {cols}", flush=True)
    cols = " ".join(f"{v:8.2f}" for v in sup_sics)
    print(f"{'any':>6} {len(ev_sr):5d} {'supervised':16s} {sup.auc:6.3f} {sup_best:7.2f}  {cols}")

    print(f"\nBeyond kinematics: max SIC in the two halves of the leading-jet p_T (split at the "
          f"SR background median {pt_cut:.0f} GeV; scores of the inclusive classifier; "
          f"evaluation signal low/high: {int(pt_s_lo.sum())}/{int((~pt_s_lo).sum())}), and the "
          f"chi2 p-value that the SR background kept by the cut at eB = 5 % / 1 % has the m_jj "
          f"shape of all SR background (8 bins of {args.sr}) with the largest relative bin "
          f"deviation")
    print(f"{'S/B':>6} {'method':16s} {'SIC pT<':>8} {'SIC pT>':>8} {'p(5%)':>7} {'dev(5%)':>8} "
          f"{'p(1%)':>7} {'dev(1%)':>8}")
    for ratio, name, lo, hi, p5, d5, p1, d1 in checks:
        print(f"{ratio:6.3%} {name:16s} {lo:8.2f} {hi:8.2f} {p5:7.3f} {d5:8.1%} {p1:7.3f} {d1:8.1%}")
    print(f"{'any':>6} {'supervised':16s} {sup_halves[0]:8.2f} {sup_halves[1]:8.2f}")
    clock["total"] = time.perf_counter() - t0
    print("\nwall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in clock.items()))


def _max_sic(scores_bkg: np.ndarray, scores_sig: np.ndarray) -> float:
    try:
        return max_sic(scores_bkg, scores_sig, max_rel_bkg_uncertainty=0.2).sic
    except ValueError:
        return float("nan")


if __name__ == "__main__":
    main()
