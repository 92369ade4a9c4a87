"""Shared fixtures.

Real CMS files live in ``../shared/data/cms/`` (relative to the repository root); set
``COFFEA_AD_CMS_DATA`` to point elsewhere. Generated samples and tiny models are made once per
session (never committed binaries).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cms_data() -> Path:
    """Folder of the real CMS files (pfnano.root, nano_tt_v15.root, ...)."""
    path = Path(os.environ.get("COFFEA_AD_CMS_DATA", REPO.parent / "shared" / "data" / "cms"))
    if not (path / "pfnano.root").is_file():
        pytest.fail(f"real CMS test files not found in {path} (set COFFEA_AD_CMS_DATA)")
    return path


@pytest.fixture(scope="session")
def pfnano_file(cms_data: Path) -> Path:
    return cms_data / "pfnano.root"


# ----------------------------------------------------------------------------- tiny ONNX AE
# Feature order, centre and scale of the tiny dense AE (SVJ-style jet substructure inputs);
# the centre/scale values are typical magnitudes of AK8 jets, so raw inputs drawn around them
# standardize to O(1).
TINY_AE_FEATURES = ["eta", "phi", "mass", "ptd", "axis_major", "axis_minor"]
TINY_AE_CENTRE = [0.0, 0.0, 120.0, 0.45, 0.12, 0.06]
TINY_AE_SCALE = [1.4, 1.8, 60.0, 0.15, 0.05, 0.03]


def build_tiny_ae(seed: int = 0):
    """A dense AE 6-4-2-4-6 (ELU) whose forward returns (per-row MAE loss, reconstruction).

    The loss is computed inside the graph, so the ONNX model's ``loss`` output is the anomaly
    score directly.
    """
    torch = pytest.importorskip("torch")

    class TinyAE(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(6, 4), torch.nn.ELU(), torch.nn.Linear(4, 2), torch.nn.ELU(),
                torch.nn.Linear(2, 4), torch.nn.ELU(), torch.nn.Linear(4, 6),
            )

        def forward(self, x):
            reco = self.net(x)
            return (reco - x).abs().mean(dim=1), reco

    torch.manual_seed(seed)
    return TinyAE().eval()


def export_tiny_ae(path: Path, *, seed: int = 0) -> Path:
    """Export :func:`build_tiny_ae` to ``path`` (opset 17, dynamic batch) plus its sidecar."""
    torch = pytest.importorskip("torch")
    from coffea_ad.inference.contract import InputSpec, ModelContract, OutputSpec

    model = build_tiny_ae(seed)
    torch.onnx.export(
        model, (torch.zeros(3, 6),), str(path), dynamo=False, opset_version=17,
        input_names=["features"], output_names=["loss", "reconstruction"],
        dynamic_axes={"features": {0: "n"}, "loss": {0: "n"}, "reconstruction": {0: "n"}},
    )
    ModelContract(
        name="tiny_ae", kind="autoencoder", level="jet", jets="FatJet", opset=17,
        inputs=[InputSpec(name="features", features=list(TINY_AE_FEATURES), shape=[6],
                          scaling="external", centre=list(TINY_AE_CENTRE),
                          scale=list(TINY_AE_SCALE))],
        outputs=[OutputSpec("loss", "score"), OutputSpec("reconstruction", "reconstruction", [6])],
        score="loss", description="tiny untrained dense AE for tests",
    ).write(path)
    return path


@pytest.fixture(scope="session")
def tiny_ae_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a tiny dense AE exported to ONNX with its sidecar contract (6 jet features,
    FatJet, external scaling, outputs ``loss`` = per-row MAE score and ``reconstruction``)."""
    return export_tiny_ae(tmp_path_factory.mktemp("tiny_ae") / "tiny_ae.onnx")


# ----------------------------------------------------------------------------- generated samples
SMALL_FILESET_REQUESTS = {
    "qcd": {"process": "qcd", "events": 400},
    "svj": {"process": "svj", "events": 300, "settings": {"mzprime": 3000.0, "rinv": 0.3}},
}


@pytest.fixture(scope="session")
def small_fileset(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Fileset (coffea dataset format) of two small generated PFNano-format datasets, seed 1:
    ``"qcd"`` (400 events, p̂T > 500 GeV) and ``"svj"`` (300 events, m_Z' = 3 TeV, r_inv = 0.3).
    Generated once per session with :func:`coffea_ad.samples.generate_fileset` (~10 s)."""
    pytest.importorskip("pythia8mc")
    pytest.importorskip("fastjet")
    from coffea_ad.samples import generate_fileset

    out = tmp_path_factory.mktemp("small_fileset")
    return generate_fileset(SMALL_FILESET_REQUESTS, out=out, seed=1)
