"""Build the two shipped models whose inputs CMS formats carry as branches.

- ``svj_treemaker_ae``: dense AE on m, m_SD, p_TD, axis major/minor, girth, τ21, τ32 of AK8
  jets; TreeMaker ``JetsAK8`` carries every input (sources in the contract).
- ``nano_fatjet_ae``: dense AE on m, m_SD, τ21, τ32 of NanoAOD ``FatJet`` branches only
  (plain NanoAOD, no PF candidates needed).

Both are trained on generated samples (the constituent-computed features equal the branch
definitions up to the differences stated in the contract). Run from the repository root:
``python studies/build_branch_models.py SAMPLES_DIR`` (generation ~2 min, training ~1 min
each on one core).
"""

from __future__ import annotations

import sys

from coffea_ad.features import BRANCH_EQUIVALENTS
from coffea_ad.samples import generate_fileset
from coffea_ad.training import dense_ae

TREEMAKER_FEATURES = ["mass", "msoftdrop", "ptd", "axis_major", "axis_minor", "girth",
                      "tau21", "tau32"]
NANO_FEATURES = ["mass", "msoftdrop", "tau21", "tau32"]


def main(samples: str) -> None:
    fs = generate_fileset(
        {"qcd_train": {"process": "qcd", "events": 6000, "settings": {"pthat_min": 400}},
         "svj": {"process": "svj", "events": 3000, "settings": {"mzprime": 3000, "rinv": 0.3}}},
        out=samples, seed=42, jobs=1)
    common = {**dense_ae.CONFIG, "epochs": 60, "seed": 42, "train_datasets": ["qcd_train"],
              "hidden": [8, 8], "latent": 3}
    tm = BRANCH_EQUIVALENTS["JetsAK8"]
    print(dense_ae.run({
        **common, "features": TREEMAKER_FEATURES,
        "sources": {"JetsAK8": {f: tm[f][0] for f in TREEMAKER_FEATURES}},
        "source_notes": {f: tm[f][1] for f in TREEMAKER_FEATURES},
    }, fs, "models/svj_treemaker_ae"))
    nano = BRANCH_EQUIVALENTS["FatJet"]
    scouting = BRANCH_EQUIVALENTS["ScoutingFatJet"]
    print(dense_ae.run({
        **common, "features": NANO_FEATURES, "latent": 2,
        "sources": {"FatJet": {f: nano[f][0] for f in NANO_FEATURES if f in nano},
                    "ScoutingFatJet": {f: scouting[f][0] for f in NANO_FEATURES}},
        "source_notes": {f: "NanoAOD FatJet branch (the registry definition); on "
                         f"ScoutingFatJet: {scouting[f][1]}" for f in NANO_FEATURES},
    }, fs, "models/nano_fatjet_ae"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "samples")
