"""Event samples: Pythia 8 + FastJet + a simple detector response -> PFNano-format ROOT files.

Needs the ``generate`` extra (``pip install 'coffea-ad[generate]'``: pythia8mc, fastjet).

>>> from coffea_ad.samples import generate
>>> fileset = generate("svj", events=1000, seed=1, out="samples", settings={"rinv": 0.3})

Modules: :mod:`.processes` (the process registry and its settings), :mod:`.detector` (the
detector response), :mod:`.clustering` (FastJet jets and substructure), :mod:`.events` (one
chunk of events), :mod:`.writer` (uproot NanoAOD writer), :mod:`.generate` (the driver).
"""

from __future__ import annotations

from coffea_ad.samples.detector import DetectorConfig
from coffea_ad.samples.generate import generate, generate_fileset, verify_file
from coffea_ad.samples.processes import PROCESSES, ProcessSpec, resolve_settings

__all__ = [
    "PROCESSES",
    "DetectorConfig",
    "ProcessSpec",
    "generate",
    "generate_fileset",
    "resolve_settings",
    "verify_file",
]
