"""Recipe: graph autoencoder on ΔR graphs of jet constituents (SVJ, robust to tt̄).

Nodes: the ``n_particles`` leading constituents of each AK8 jet with features Δη, Δφ (to the
jet axis), mass, log p_T, particle-flow class of pdgId, d0, dz (the issue's η, φ, m, p_T,
pdgId, d0, dz, made translation invariant and well scaled). Edges: ΔR < ``r_c`` between
constituents (or Gaussian weights, ``adjacency="weighted"``), built inside the ONNX graph from
the Δη/Δφ columns. Score: masked MSE of the reconstructed nodes.
``coffea-ad train gae --fileset F --out models/gae``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coffea_ad.inference.contract import OutputSpec
from coffea_ad.nn import recipe

__all__ = ["CONFIG", "RELATIVE_PHI", "periodic_phi", "run"]

RELATIVE_PHI = ("dphi",)  # particle features holding φ relative to the jet axis

CONFIG: dict[str, Any] = {
    "particle_features": ["deta", "dphi", "mass", "log_pt", "pdg_class", "d0", "dz"],
    "n_particles": 50,
    "r_c": 0.1,
    "adjacency": "hard",     # "hard" (ΔR < r_c) | "weighted" (exp(-ΔR²/2r_c²))
    "jets": "FatJet",
    "max_jets": 2,
    "min_pt": 200.0,
    "hidden": [32, 16],
    "latent": 4,
    "activation": "elu",
    "epochs": 60,
    "batch_size": 128,
    "lr": 1e-3,
    "patience": 8,
    "lr_patience": 3,
    "seed": 0,
    "train_datasets": None,
    "val_fraction": 0.2,
    "test_fraction": 0.2,
    "threads": 1,
}


def periodic_phi(feature: str) -> bool:
    """Whether the graph wraps ``Δφ`` of the φ column named ``feature``: not for ``dphi``
    (relative to the jet axis, ``|Δφ| < π`` between constituents of a jet, where the wrap is
    the identity; see ``GraphAutoencoder``), yes for anything else (a raw azimuth)."""
    return feature not in RELATIVE_PHI


def run(config: dict[str, Any] | None, fileset: dict | str | Path,
        out: str | Path) -> dict[str, Any]:
    """Train, evaluate and export the graph AE; see :data:`CONFIG`."""
    from coffea_ad.errors import UnknownNameError
    from coffea_ad.nn.graph_ae import GraphAutoencoder

    cfg = recipe.resolve_config(CONFIG, config, recipe="gae")
    feats = list(cfg["particle_features"])
    for needed in ("deta", "dphi"):
        if needed not in feats:
            raise UnknownNameError("gae particle feature (Δη and Δφ build the graph)", needed,
                                   feats)

    def build(centre, scale):
        return GraphAutoencoder(len(feats), cfg["n_particles"], eta_index=feats.index("deta"),
                                phi_index=feats.index("dphi"), r_c=cfg["r_c"],
                                periodic_phi=periodic_phi("dphi"),
                                adjacency=cfg["adjacency"], hidden=cfg["hidden"],
                                latent=cfg["latent"], activation=cfg["activation"],
                                centre=centre, scale=scale)

    return recipe.run_constituent_model(
        cfg, fileset, out, build=build, kind="graph_autoencoder", recipe_name="gae",
        outputs=[OutputSpec("loss", "score: masked MSE of standardized node features"),
                 OutputSpec("reconstruction", "reconstructed nodes, raw units (0 at padding)",
                            [cfg["n_particles"], len(feats)])],
        score="loss",
        description=(f"Graph autoencoder (GCN, ΔR<{cfg['r_c']} {cfg['adjacency']} adjacency) "
                     "on jet constituents."),
        # the normalized adjacency as a derived input, built per batch by the scorer's
        # compiled pass over the real pairs: half of the graph's ONNX Runtime time otherwise
        graph={"kind": "normalized_adjacency", "of": "particles", "eta": "deta",
               "phi": "dphi", "r_c": cfg["r_c"], "adjacency": cfg["adjacency"],
               "periodic_phi": periodic_phi("dphi")})
