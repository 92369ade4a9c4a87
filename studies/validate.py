"""Physics validation of the training suite on generated samples (slow: minutes to an hour).

``python studies/validate.py --out validation [--only ae,gae,vbs,cvae] [--scale S]``

Generates the samples it needs (Pythia8 + FastJet, resumable: files already there are reused),
trains each model family with its recipe and prints the figures that judge each family:

- ``ae``: dense AE on substructure, SVJ (Z' 3 TeV, r_inv 0.3) vs QCD, jet-level AUC (target
  >= 0.80), also for dark-quark-matched signal jets only (``FatJet_isDark``), with the PCA and
  supervised boosted-tree baselines for scale;
- ``gae``: graph AE vs dense AE when tt̄ joins QCD in the background (target: GAE better);
- ``cvae``: LHC-Olympics-style Z' -> XY: cVAE trained on the sidebands of "data" (QCD + signal
  injected at S/B ~ 1% in the SR), background template sampled in the SR, classifier of data
  vs template, max SIC on held-out events (target >= 5);
- ``vbs``: VAE vs VAE + DNN on the H±± sample: σ = |BSM − SM|/√SM at the best cut.

Every figure is also written to ``OUT/validation.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "validate_ae", "validate_cvae", "validate_gae", "validate_vbs"]

# dataset names are folders under OUT/samples: one name per process *and* settings
QCD = "qcd_pthat500"          # the SVJ studies' QCD (p̂T > 500 GeV)
QCD_DIJET = "qcd_pthat1000"   # the resonant study's QCD around m_jj ~ 3.5 TeV


def _samples(out: Path, requests: dict[str, dict], seed: int) -> dict[str, Any]:
    from coffea_ad.samples import generate_fileset

    t = time.perf_counter()
    fs = generate_fileset(requests, out=out / "samples", seed=seed, jobs=1)
    print(f"  samples {sorted(requests)} ready in {time.perf_counter() - t:.0f} s", flush=True)
    return {k: fs[k] for k in requests}


def _dark_jet_auc(model: Path, fileset: dict, bkg: str, sig: str, *, min_pt: float,
                  seed: int, test_fraction: float, val_fraction: float) -> dict[str, float]:
    """AUC through the scorer: held-out background jets vs all / dark-matched signal jets."""
    import awkward as ak

    from coffea_ad.inference import OnnxScorer
    from coffea_ad.nn.data import iter_events, split_indices
    from coffea_ad.stats.roc import auc

    scorer = OnnxScorer(model, intra_op_threads=1)
    out: dict[str, list] = {"bkg": [], "bkg_event": [], "sig": [], "sig_dark": []}
    offset = 0
    for name, _path, events in iter_events(fileset, [bkg, sig]):
        s = scorer.score_events(events)[:, :2]
        keep = events.FatJet.pt[:, :2] > min_pt
        if name == bkg:
            out["bkg"].append(ak.to_numpy(ak.flatten(s[keep])))
            ev = ak.broadcast_arrays(np.arange(len(events)) + offset, keep)[0]
            out["bkg_event"].append(ak.to_numpy(ak.flatten(ev[keep])))
            offset += len(events)
        else:
            out["sig"].append(ak.to_numpy(ak.flatten(s[keep])))
            dark = keep & events.FatJet.isDark[:, :2]
            out["sig_dark"].append(ak.to_numpy(ak.flatten(s[dark])))
    b = np.concatenate(out["bkg"])
    _, _, te = split_indices(len(b), val_fraction=val_fraction, test_fraction=test_fraction,
                             seed=seed, groups=np.concatenate(out["bkg_event"]))
    return {"all_jets": round(auc(b[te], np.concatenate(out["sig"])), 4),
            "dark_jets": round(auc(b[te], np.concatenate(out["sig_dark"])), 4)}


def validate_ae(out: Path, *, scale: float, seed: int) -> dict[str, Any]:
    """Dense AE (and baselines) on SVJ vs QCD jets."""
    from coffea_ad.training import dense_ae, pca

    fs = _samples(out, {
        QCD: {"process": "qcd", "events": int(6000 * scale)},
        "svj": {"process": "svj", "events": int(2000 * scale),
                "settings": {"mzprime": 3000, "rinv": 0.3}},
    }, seed)
    res: dict[str, Any] = {}
    extended = ["eta", "phi", "mass", "ptd", "axis_major", "axis_minor", "efp1", "c2_b1",
                "d2_b1", "girth", "lha", "tau21", "tau32"]
    no_phi = [f for f in dense_ae.CONFIG["features"] if f != "phi"]  # φ is flat: pure noise
    variants = (("default", {}), ("extended_features", {"features": extended}),
                ("pt_flattened", {"pt_flatten": True}), ("without_phi", {"features": no_phi}),
                ("latent_3", {"latent": 3}), ("without_phi_latent_3",
                                              {"features": no_phi, "latent": 3}))
    for label, cfg in variants:
        t = time.perf_counter()
        path = out / "models" / f"dense_ae_{label}"
        m = dense_ae.run({"seed": seed, **cfg}, fs, path)
        dark = _dark_jet_auc(path.with_suffix(".onnx"), fs, QCD, "svj",
                             min_pt=dense_ae.CONFIG["min_pt"], seed=seed,
                             test_fraction=dense_ae.CONFIG["test_fraction"],
                             val_fraction=dense_ae.CONFIG["val_fraction"])
        res[label] = {"auc_svj": m["auc"]["svj"], "auc_scorer": dark, "n_train": m["n_train"],
                      "epochs": m["epochs"], "seconds": round(time.perf_counter() - t, 1)}
        print(f"  dense AE [{label}]: AUC svj vs qcd = {m['auc']['svj']:.3f} "
              f"(dark-matched jets {dark['dark_jets']:.3f}; target >= 0.80)", flush=True)
    p = pca.run({"seed": seed}, fs, out / "models" / "pca")
    res["pca"] = {"auc_svj": p["auc"]["svj"], "bdt_auc_svj": p.get("bdt_auc", {}).get("svj")}
    print(f"  PCA baseline AUC {p['auc']['svj']:.3f}; supervised BDT AUC "
          f"{res['pca']['bdt_auc_svj']}", flush=True)
    return res


def validate_gae(out: Path, *, scale: float, seed: int) -> dict[str, Any]:
    """GAE vs dense AE with tt̄ added to the background."""
    from coffea_ad.training import dense_ae, gae

    fs = _samples(out, {
        QCD: {"process": "qcd", "events": int(6000 * scale)},
        "ttbar": {"process": "ttbar", "events": int(3000 * scale),
                  "settings": {"pthat_min": 400.0}},
        "svj": {"process": "svj", "events": int(2000 * scale),
                "settings": {"mzprime": 3000, "rinv": 0.3}},
    }, seed)
    train = {"train_datasets": [QCD, "ttbar"], "seed": seed}
    t = time.perf_counter()
    ae = dense_ae.run(train, fs, out / "models" / "dense_ae_qcd_tt")
    t_ae = time.perf_counter() - t
    t = time.perf_counter()
    g = gae.run({**train, "epochs": 40}, fs, out / "models" / "gae_qcd_tt")
    t_g = time.perf_counter() - t
    res = {"ae_auc_svj": ae["auc"]["svj"], "gae_auc_svj": g["auc"]["svj"],
           "gae_beats_ae": g["auc"]["svj"] > ae["auc"]["svj"],
           "seconds": {"ae": round(t_ae, 1), "gae": round(t_g, 1)}}
    print(f"  background qcd+ttbar: dense AE AUC {ae['auc']['svj']:.3f}, GAE AUC "
          f"{g['auc']['svj']:.3f} (target: GAE > AE)", flush=True)
    return res


def validate_cvae(out: Path, *, scale: float, seed: int,
                  s_over_b: tuple[float, ...] = (0.01, 0.05, 0.2)) -> dict[str, Any]:
    """LHC-Olympics-style resonant AD with the cVAE as the background template generator,
    at each signal-to-background ratio of ``s_over_b`` in the signal region."""
    from coffea_ad.nn.data import dijet_rows, load_rows
    from coffea_ad.training.cvae import CONFIG

    try:
        fs = _samples(out, {
            QCD_DIJET: {"process": "qcd", "events": int(30000 * scale),
                        "settings": {"pthat_min": 1000.0}},
            "zxy": {"process": "zprime_xy", "events": int(3000 * scale)},
        }, seed)
    except RuntimeError as err:  # Pythia could not set the process up: report, do not hide
        print(f"  cVAE validation skipped: sample generation failed: {err}", flush=True)
        return {"error": f"sample generation failed: {err}"}
    rows = load_rows(fs, dijet_rows, names=CONFIG["jet_features"], min_pt=CONFIG["min_pt"])
    res = {}
    for sb in s_over_b:
        r = _cathode_like(rows[QCD_DIJET], rows["zxy"], CONFIG, seed=seed, s_over_b=sb)
        res[f"s_over_b_{sb:g}"] = r
        print(f"  cVAE (S/B in SR {r['s_over_b_sr']:.2%}, {r['n_signal_injected']} signal in "
              f"{r['n_data_sr']} data SR events): max SIC {r['max_sic_cvae_template']} "
              f"(idealized {r['max_sic_idealized_true_background']}; target >= 5 at 1%), "
              f"AUC {r['auc']}", flush=True)
    return res


def _cathode_like(q: dict, s: dict, config: dict, *, seed: int, s_over_b: float
                  ) -> dict[str, Any]:
    """Train the cVAE on the sidebands of "data" (half of the QCD + injected signal), sample an
    SR template, classify data-SR vs template, measure on held-out QCD and signal in the SR."""
    import torch

    from coffea_ad.nn.cvae import ConditionalVAE
    from coffea_ad.nn.fit import fit
    from coffea_ad.nn.scaling import standardization
    from coffea_ad.report.classifier import fit_data_vs_template
    from coffea_ad.stats.roc import auc, max_sic

    sr = (config["sr_low"], config["sr_high"])
    rng = np.random.default_rng(seed)
    q_sr = (q["mjj"] >= sr[0]) & (q["mjj"] <= sr[1])
    s_sr = (s["mjj"] >= sr[0]) & (s["mjj"] <= sr[1])
    # QCD: half is "data", half held out to evaluate; signal: injected vs held out
    q_data = rng.random(len(q["mjj"])) < 0.5
    n_inject = round(s_over_b * (q_sr & q_data).sum())
    sig_idx = np.flatnonzero(s_sr)
    rng.shuffle(sig_idx)
    inj, held = sig_idx[:n_inject], sig_idx[n_inject:]
    x = np.concatenate([q["x"][q_data], s["x"][inj]])
    c = np.concatenate([q["mjj"][q_data], s["mjj"][inj]])[:, None]
    in_sr = (c[:, 0] >= sr[0]) & (c[:, 0] <= sr[1])
    sb = np.flatnonzero(~in_sr)
    rng.shuffle(sb)
    n_val = len(sb) // 5
    tr, va = sb[n_val:], sb[:n_val]
    centre, scl = standardization(x[tr])
    lc = np.log(c[tr])
    torch.manual_seed(seed)
    model = ConditionalVAE(x.shape[1], 1, hidden=config["hidden"], latent=config["latent"],
                           beta=config["beta"], centre=centre, scale=scl,
                           cond_centre=lc.mean(0), cond_scale=lc.std(0))
    hist = fit(model, [x[tr], c[tr]], [x[va], c[va]], epochs=100, batch_size=256, lr=1e-3,
               patience=10, seed=seed)
    model.calibrate_noise(x[tr], c[tr])
    data_sr = x[in_sr]
    gen = torch.Generator().manual_seed(seed)
    # template: 4x the data SR, m_jj drawn from the data SR (as CATHODE does)
    template = model.sample(np.repeat(c[in_sr], 4, axis=0), generator=gen).numpy()
    options = {"seed": seed, "max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15}
    clf = fit_data_vs_template(data_sr, template, **options)
    q_test = q["x"][~q_data & q_sr]
    s_test = s["x"][held]
    pb, ps = clf.predict_proba(q_test)[:, 1], clf.predict_proba(s_test)[:, 1]
    # the idealized reference: the same classifier with true SR background instead of template
    half = len(q_test) // 2
    ideal = fit_data_vs_template(data_sr, q_test[:half], **options)
    res = {
        "s_over_b_sr": round(n_inject / max((q_sr & q_data).sum(), 1), 4),
        "n_data_sr": int(in_sr.sum()), "n_signal_injected": int(n_inject),
        "n_test": {"background": len(q_test), "signal": len(s_test)},
        "epochs": len(hist.train_loss),
        # 0.5 would mean the template is indistinguishable from the true SR background
        "template_vs_true_background_auc": round(auc(
            clf.predict_proba(q_test)[:, 1], clf.predict_proba(template[: len(q_test)])[:, 1]), 4),
        "auc": round(auc(pb, ps), 4),
    }
    for label, (b_scores, s_scores) in {
        "cvae_template": (pb, ps),
        "idealized_true_background": (ideal.predict_proba(q_test[half:])[:, 1],
                                      ideal.predict_proba(s_test)[:, 1]),
    }.items():
        try:
            res[f"max_sic_{label}"] = round(max_sic(b_scores, s_scores).sic, 3)
        except ValueError as err:
            res[f"max_sic_{label}"] = f"n/a: {err}"
    return res


def validate_vbs(out: Path, *, scale: float, seed: int) -> dict[str, Any]:
    """VAE vs VAE + DNN on H±± (same-sign WW + 2 jets) against WZ."""
    from coffea_ad.training import vae, vae_dnn

    fs = _samples(out, {
        "wz": {"process": "wz", "events": int(5000 * scale),
               "settings": {"w_decay": "leptonic", "z_decay": "leptonic"}},
        "hpp": {"process": "hpp", "events": int(2000 * scale)},
    }, seed)
    v = vae.run({"seed": seed}, fs, out / "models" / "vae")
    d = vae_dnn.run({"seed": seed}, fs, out / "models" / "vae_dnn")
    res = {"vae": {"auc": v["auc"]["hpp"], "significance": v["significance"]["hpp"],
                   "n_train": v["n_train"]},
           "vae_dnn": {"auc": d["auc"]["hpp"], "significance": d["significance"]["hpp"],
                       "vae_part_auc": d["auc_vae_only"]["hpp"]}}
    print(f"  VAE: AUC {v['auc']['hpp']:.3f}, σ at best cut "
          f"{v['significance']['hpp']['sigma']}; VAE+DNN: AUC {d['auc']['hpp']:.3f}, σ "
          f"{d['significance']['hpp']['sigma']} (L = {vae.CONFIG['lumi_fb']} fb^-1)", flush=True)
    return res


STEPS = {"ae": validate_ae, "gae": validate_gae, "vbs": validate_vbs, "cvae": validate_cvae}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="validation", type=Path)
    parser.add_argument("--only", default=",".join(STEPS), help="comma list of " + ", ".join(STEPS))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every sample size")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    summary_path = args.out / "validation.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    for step in args.only.split(","):
        if step not in STEPS:
            from coffea_ad.errors import UnknownNameError

            raise UnknownNameError("validation step", step, STEPS)
        print(f"[{step}]", flush=True)
        t = time.perf_counter()
        summary[step] = STEPS[step](args.out, scale=args.scale, seed=args.seed)
        summary[step]["total_seconds"] = round(time.perf_counter() - t, 1)
        summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


if __name__ == "__main__":
    main()
