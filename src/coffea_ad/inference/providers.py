"""ONNX Runtime execution providers: which to ask for, in which order.

The default prefers the GPU providers when this process's ``onnxruntime`` build offers them
(``onnxruntime-gpu``) and falls back to the CPU. A user's own ordering is honoured, with the
providers this build lacks dropped; what actually ran is read back from the session
(``InferenceSession.get_providers()``), never assumed.
"""

from __future__ import annotations

from collections.abc import Sequence

from coffea_ad._optional import require
from coffea_ad.errors import InvalidArgumentError

__all__ = [
    "DEFAULT_PREFERENCE",
    "PROVIDER_ALIASES",
    "available_providers",
    "resolve_provider_name",
    "select_providers",
]

#: Order tried when the user gives none: TensorRT, then CUDA, then CPU (the first available
#: wins; ONNX Runtime assigns nodes a provider cannot run to the next one in the list).
DEFAULT_PREFERENCE: tuple[str, ...] = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)

#: Short names accepted anywhere a provider is named (CLI ``--provider cuda``).
PROVIDER_ALIASES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
}


def available_providers() -> list[str]:
    """Providers of the installed ``onnxruntime`` build, in ONNX Runtime's own priority order."""
    ort = require("onnxruntime", purpose="ONNX model scoring")
    return list(ort.get_available_providers())


def resolve_provider_name(name: str) -> str:
    """``"cuda"`` -> ``"CUDAExecutionProvider"``; full names pass through unchanged."""
    return PROVIDER_ALIASES.get(name.lower(), name)


def select_providers(
    requested: Sequence[str] | None = None,
    *,
    available: Sequence[str] | None = None,
) -> list[str]:
    """The provider list to hand to ``onnxruntime.InferenceSession``.

    Args:
        requested: the user's ordering (full names or aliases such as ``"cuda"``); ``None``
            means :data:`DEFAULT_PREFERENCE`.
        available: providers of this build; ``None`` asks ``onnxruntime``. Tests pass a list
            here to exercise the GPU branches on machines without a GPU.

    Returns:
        The requested providers that are available, in the requested order, ending with
        ``CPUExecutionProvider`` when the build has it (so nodes a GPU provider cannot run
        still have somewhere to go).

    Raises:
        ValueError: none of the requested providers is available (the message lists both).
    """
    avail = list(available) if available is not None else available_providers()
    wanted = (
        list(DEFAULT_PREFERENCE)
        if requested is None
        else [resolve_provider_name(p) for p in requested]
    )
    chosen = [p for p in dict.fromkeys(wanted) if p in avail]
    if not chosen:
        raise InvalidArgumentError(
            f"none of the requested execution providers {wanted} is available in this "
            f"onnxruntime build; available: {avail}"
            + (
                " (install onnxruntime-gpu instead of onnxruntime for CUDA/TensorRT)"
                if any("CUDA" in p or "Tensorrt" in p for p in wanted)
                else ""
            )
        )
    if "CPUExecutionProvider" in avail and "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen
