"""Train the jet autoencoder of the QR-gain study on QCD files the study never reads.

    python studies/qr_train_jet_ae.py --out /work/data/qrgain/models/jet_ae_rho --latent 1

The library's ``dense_ae`` recipe on ``lhco_qcd`` files ``[0, --train-files)`` (the files
``studies/qr_gain.py`` reserves for training; its thresholds and data start after them) and,
for the recipe's test AUC only, the ``lhco_xy2`` signal. Writes NAME.onnx/.json/.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from coffea_ad.training import dense_ae


def fileset(data: Path, n_qcd: int) -> dict:
    out = {}
    for name, n, is_signal in (("lhco_qcd", n_qcd, False), ("lhco_xy2", None, True)):
        roots = sorted((data / name).glob(f"{name}_*.root"))[:n]
        prov = json.loads(roots[0].with_suffix(".json").read_text())
        out[name] = {"files": {str(r): "Events" for r in roots},
                     "metadata": {"process": prov["process"], "is_signal": is_signal,
                                  "settings": prov["settings"]}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/data/lhco/r1"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--train-files", type=int, default=100)
    ap.add_argument("--features", nargs="+", default=["rho", "log_pt", "mass", "tau21", "tau32"])
    ap.add_argument("--hidden", type=int, nargs="+", default=[32, 16])
    ap.add_argument("--latent", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    t0 = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    res = dense_ae.run({**dense_ae.CONFIG, "features": args.features, "hidden": args.hidden,
                        "latent": args.latent, "epochs": args.epochs, "batch_size": 1024,
                        "min_pt": 300.0, "threads": 1, "train_datasets": ["lhco_qcd"],
                        "disco": 0.0}, fileset(args.data, args.train_files), args.out)
    print(json.dumps(res, default=str))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
