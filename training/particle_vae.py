"""Recipe: particle-list VAE with the Chamfer loss on jet constituents (model-agnostic dijet).

Constituents (Δη, Δφ, p_T fraction) of the leading AK8 jets, p_T-ordered and padded to
``n_particles``; deep-set encoder, Chamfer + beta KL loss (:class:`coffea_ad.nn.particle_vae.
ParticleVAE`); trained on background jets. Per-jet score; combine the two jets of an event
downstream (min/max/sum, see the ``qr`` recipe). ``coffea-ad train particle_vae --fileset F
--out models/particle_vae``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coffea_ad.inference.contract import OutputSpec
from coffea_ad.nn import recipe

__all__ = ["CONFIG", "run"]

CONFIG: dict[str, Any] = {
    "particle_features": ["deta", "dphi", "pt_frac"],
    "n_particles": 50,
    "n_out": 50,             # particles emitted by the decoder
    "jets": "FatJet",
    "max_jets": 2,
    "min_pt": 200.0,
    "hidden": 64,
    "latent": 8,
    "beta": 0.1,
    "score": "combined",     # "combined" (Chamfer + beta KL) | "chamfer"
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


def run(config: dict[str, Any] | None, fileset: dict | str | Path,
        out: str | Path) -> dict[str, Any]:
    """Train, evaluate and export the particle VAE; see :data:`CONFIG`."""
    from coffea_ad.nn.particle_vae import ParticleVAE

    cfg = recipe.resolve_config(CONFIG, config, recipe="particle_vae")
    n_feat = len(cfg["particle_features"])

    def build(centre, scale):
        return ParticleVAE(n_feat, cfg["n_particles"], n_out=cfg["n_out"], hidden=cfg["hidden"],
                           latent=cfg["latent"], beta=cfg["beta"], score=cfg["score"],
                           centre=centre, scale=scale)

    return recipe.run_constituent_model(
        cfg, fileset, out, build=build, kind="particle_vae", recipe_name="particle_vae",
        outputs=[OutputSpec("score", f"score: {cfg['score']} loss (Chamfer on standardized "
                            "constituents + beta KL)"),
                 OutputSpec("chamfer", "Chamfer distance alone"),
                 OutputSpec("reconstruction", "decoded constituents, raw units",
                            [cfg["n_out"], n_feat]),
                 OutputSpec("latent_mean", "posterior mean", [cfg["latent"]])],
        score="score",
        description="Particle-list VAE (deep-set encoder, Chamfer loss) on jet constituents.")
