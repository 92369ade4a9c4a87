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
