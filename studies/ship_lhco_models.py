"""Train the shipped LHCO-like models of models/ (``lhco_cvae`` for the resonant processor,
``lhco_jet_ae`` for the bump hunt) on files of ``coffea-ad generate lhco``.

    python studies/ship_lhco_models.py --data /work/data/lhco/r1 --out models

(the cVAE as shipped now: ``--only cvae --qcd-files 400 --cvae-beta 0.01 --cvae-prior 10
--cvae-batch 512 --cvae-latent 6 --cvae-logit``; see models/README.md).

Uses the first ``--qcd-files`` background files and ``--signal-files`` 2-prong signal files
(seed-15 recipe files are byte-reproducible; their sha256 goes into each contract).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def fileset(data: Path, n_qcd: int, n_sig: int) -> dict:
    out = {}
    for name, n, is_signal in (("lhco_qcd", n_qcd, False), ("lhco_xy2", n_sig, True)):
        files = {}
        for i in range(n):
            root = data / name / f"{name}_{i:04d}.root"
            prov = json.loads(root.with_suffix(".json").read_text())
            files[str(root)] = "Events"
        out[name] = {"files": files, "metadata": {"process": prov["process"],
                                                  "is_signal": is_signal,
                                                  "settings": prov["settings"]}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/data/lhco/r1"))
    ap.add_argument("--out", type=Path, default=Path("models"))
    ap.add_argument("--qcd-files", type=int, default=10)
    ap.add_argument("--signal-files", type=int, default=2)
    ap.add_argument("--only", nargs="+", default=["cvae", "ae"])
    # the cVAE's settings (defaults: those of the first shipped lhco_cvae, 6 files)
    ap.add_argument("--cvae-beta", type=float, default=0.5)
    ap.add_argument("--cvae-prior", type=int, default=0,
                    help="latent mixture-prior components of the sampler (0: N(0, 1))")
    ap.add_argument("--cvae-batch", type=int, default=256)
    ap.add_argument("--cvae-epochs", type=int, default=40)
    ap.add_argument("--cvae-latent", type=int, default=4)
    ap.add_argument("--cvae-logit", action="store_true",
                    help="model the features in a logit box (template inside the physical range)")
    args = ap.parse_args()
    fs = fileset(args.data, args.qcd_files, args.signal_files)
    if "cvae" in args.only:
        from coffea_ad.training import cvae

        res = cvae.run({**cvae.CONFIG, "epochs": args.cvae_epochs, "threads": 1,
                        "beta": args.cvae_beta, "prior_components": args.cvae_prior,
                        "batch_size": args.cvae_batch, "latent": args.cvae_latent,
                        "logit": args.cvae_logit, "train_datasets": ["lhco_qcd"]},
                       fs, args.out / "lhco_cvae")
        print("lhco_cvae", json.dumps(res))
    if "ae" in args.only:
        from coffea_ad.training import dense_ae

        res = dense_ae.run({**dense_ae.CONFIG, "features": ["mass", "msoftdrop", "tau21", "tau32"],
                            "hidden": [16, 8], "latent": 1, "epochs": 40, "min_pt": 300.0,
                            "threads": 1, "train_datasets": ["lhco_qcd"], "disco": 0.0},
                           fs, args.out / "lhco_jet_ae")
        print("lhco_jet_ae", json.dumps(res))


if __name__ == "__main__":
    main()
