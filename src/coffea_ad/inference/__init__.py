"""ONNX Runtime scoring inside coffea, driven by each model's sidecar contract.

``OnnxScorer`` scores awkward, dask-awkward or numpy inputs; ``add_scores`` is the one-liner
for processors; ``write_score_friend`` writes a ROOT friend tree aligned with the input.
"""

from __future__ import annotations

from coffea_ad.inference.checks import graph_signature
from coffea_ad.inference.contract import (
    CONTRACT_VERSION,
    InputSpec,
    ModelContract,
    OutputSpec,
    file_sha256,
    sidecar_path,
)
from coffea_ad.inference.friend import FriendSummary, write_score_friend
from coffea_ad.inference.providers import available_providers, select_providers
from coffea_ad.inference.scorer import (
    FLAG_VALUE,
    NONFINITE_MASK,
    OnnxScorer,
    ScorerStats,
    add_scores,
)
from coffea_ad.inference.session import release_sessions, session_creations

__all__ = [
    "CONTRACT_VERSION",
    "FLAG_VALUE",
    "NONFINITE_MASK",
    "FriendSummary",
    "InputSpec",
    "ModelContract",
    "OnnxScorer",
    "OutputSpec",
    "ScorerStats",
    "add_scores",
    "available_providers",
    "file_sha256",
    "graph_signature",
    "release_sessions",
    "select_providers",
    "session_creations",
    "sidecar_path",
    "write_score_friend",
]
