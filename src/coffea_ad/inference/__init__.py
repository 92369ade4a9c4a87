"""ONNX Runtime scoring inside coffea, driven by each model's sidecar contract.

``OnnxScorer`` scores awkward, dask-awkward or numpy inputs; ``add_scores`` is the one-liner
for processors; ``OnnxWrapper`` (``onnx_wrapper``) is the same in the form of coffea's
``ml_tools`` wrappers; ``write_score_friend`` writes a ROOT friend tree aligned with the input.
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
    BATCH_BYTES,
    FLAG_VALUE,
    NONFINITE_MASK,
    OnnxScorer,
    ScorerStats,
    add_scores,
    auto_batch_size,
)
from coffea_ad.inference.session import release_sessions, session_creations
from coffea_ad.inference.working_point import (
    WorkingPoint,
    read_working_point,
    working_point_path,
    write_working_point,
)

__all__ = [
    "BATCH_BYTES",
    "CONTRACT_VERSION",
    "DERIVED_BYTES",
    "FLAG_VALUE",
    "NONFINITE_MASK",
    "FriendSummary",
    "InputSpec",
    "ModelContract",
    "OnnxScorer",
    "OnnxWrapper",
    "OutputSpec",
    "ScorerStats",
    "WorkingPoint",
    "add_scores",
    "auto_batch_size",
    "available_providers",
    "file_sha256",
    "graph_signature",
    "onnx_wrapper",
    "read_working_point",
    "release_sessions",
    "select_providers",
    "session_creations",
    "sidecar_path",
    "working_point_path",
    "write_score_friend",
    "write_working_point",
]


def __getattr__(name: str) -> object:
    # coffea.ml_tools imports torch (seconds) at import: load the wrapper only when asked for
    if name in ("OnnxWrapper", "onnx_wrapper"):
        from coffea_ad.inference import coffea_wrapper

        return getattr(coffea_wrapper, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
