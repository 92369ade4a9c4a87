"""Checks of an ONNX model file against its contract, before and where sessions are made.

:func:`graph_signature` reads inputs/outputs/opset with ``onnx`` (no session), so a scorer can
refuse a mismatched or corrupt model on the client before any event is read; the session's own
inputs are compared again where a worker creates it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad._optional import require
from coffea_ad.errors import ModelContractError, ModelFileError
from coffea_ad.inference.contract import ModelContract

__all__ = [
    "check_feature_names",
    "check_graph_against_contract",
    "check_model_file",
    "check_session_against_contract",
    "graph_signature",
    "output_dtype",
    "session_output_dtype",
]

# ONNX Runtime type strings -> numpy dtypes (the ones contracts may name)
_ORT_DTYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype("float32"),
    "tensor(double)": np.dtype("float64"),
    "tensor(float16)": np.dtype("float16"),
    "tensor(int64)": np.dtype("int64"),
    "tensor(int32)": np.dtype("int32"),
    "tensor(bool)": np.dtype("bool"),
}


# onnx.TensorProto element types -> numpy dtypes (for the pre-session check of the file)
_ONNX_ELEM_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("float32"),
    11: np.dtype("float64"),
    10: np.dtype("float16"),
    7: np.dtype("int64"),
    6: np.dtype("int32"),
    9: np.dtype("bool"),
}


# ----------------------------------------------------------------------------- model checks
def check_model_file(path: Path) -> None:
    """Raise :class:`ModelFileError` for a missing or empty model file."""
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist (expected an .onnx file)")
    if path.stat().st_size == 0:
        raise ModelFileError(f"model file {path} is empty (expected an ONNX protobuf)")


@functools.lru_cache(maxsize=32)
def _graph_signature(path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    """Inputs/outputs/opset of an ONNX file, read with ``onnx`` (no session is created)."""
    onnx = require("onnx", purpose="reading ONNX models")
    try:
        model = onnx.load(path, load_external_data=False)
        onnx.checker.check_model(model)
    except Exception as err:  # protobuf DecodeError, ValidationError, truncated files
        raise ModelFileError(
            f"model file {path} ({size} bytes) is not a valid ONNX model (truncated or "
            f"corrupt?): {type(err).__name__}: {err}"
        ) from err
    inits = {i.name for i in model.graph.initializer}

    def describe(values: Any) -> dict[str, tuple[np.dtype | None, list[Any]]]:
        out = {}
        for v in values:
            if v.name in inits:
                continue
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                    for d in t.shape.dim]
            out[v.name] = (_ONNX_ELEM_DTYPES.get(t.elem_type), dims)
        return out

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    inputs = describe(model.graph.input)
    return {"inputs": inputs, "outputs": describe(model.graph.output), "opset": opset,
            "row_bytes": _largest_row_bytes(model, inputs)}


def _largest_row_bytes(model: Any, inputs: dict[str, tuple[Any, list[Any]]]) -> int | None:
    """Bytes per batch row of the graph's largest tensor with a dynamic first axis (from ONNX
    shape inference): what one row of a batch keeps in the caches. None where it cannot be
    told. Inference loses the batch axis's name through ops like ConstantOfShape + Where
    (``unk__N``), so every dynamic first axis counts as a batch axis: at worst a batch is
    smaller than needed."""
    onnx = require("onnx", purpose="reading ONNX models")
    if not any(dims and not isinstance(dims[0], int) for _, dims in inputs.values()):
        return None
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - best effort: the batch size then follows the inputs
        return None
    largest = None
    for v in (*inferred.graph.value_info, *inferred.graph.output):
        t = v.type.tensor_type
        dtype = _ONNX_ELEM_DTYPES.get(t.elem_type)
        dims = list(t.shape.dim)
        if (dtype is None or not dims or dims[0].HasField("dim_value")
                or not all(d.HasField("dim_value") for d in dims[1:])):
            continue
        size = int(np.prod([d.dim_value for d in dims[1:]], dtype=np.int64)) * dtype.itemsize
        largest = size if largest is None else max(largest, size)
    return largest


def graph_signature(model_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Inputs, outputs and opset of an ONNX file, read with ``onnx`` (no session created).

    Args:
        model_path: the ``.onnx`` file.

    Returns:
        ``{"inputs": {name: (dtype, dims)}, "outputs": {...}, "opset": int,
        "row_bytes": int | None}``; ``dims`` holds ints for fixed axes and the symbolic name
        (or ``None``) for dynamic ones; ``row_bytes`` is the bytes per batch row of the
        largest tensor of the graph with the inputs' batch axis (ONNX shape inference; None
        where unknown).

    Raises:
        ModelFileError: missing, empty, truncated or invalid file.
    """
    path = Path(model_path).resolve()
    check_model_file(path)
    st = path.stat()
    return _graph_signature(str(path), st.st_size, st.st_mtime_ns)


def _compare_io(
    contract: ModelContract,
    inputs: dict[str, tuple[np.dtype | None, list[Any]]],
    outputs: dict[str, tuple[np.dtype | None, list[Any]]],
    where: str,
) -> None:
    problems: list[str] = []
    if sorted(inputs) != sorted(contract.input_names):
        problems.append(
            f"inputs: contract names {contract.input_names}, {where} has {sorted(inputs)}"
        )
    for spec in contract.inputs:
        if spec.name not in inputs:
            continue
        dtype, dims = inputs[spec.name]
        if dtype is not None and dtype != np.dtype(spec.dtype):
            problems.append(f"input {spec.name!r}: contract dtype {spec.dtype}, {where} {dtype}")
        if not _shape_matches(spec.shape, dims[1:]) or len(dims) != len(spec.shape) + 1:
            problems.append(
                f"input {spec.name!r}: contract per-row shape {spec.shape}, {where} shape {dims}"
            )
    for out in contract.outputs:
        if out.name not in outputs:
            problems.append(
                f"output {out.name!r} of the contract is not among the {where} outputs "
                f"{sorted(outputs)}"
            )
            continue
        dims = outputs[out.name][1]
        if not _shape_matches(out.shape, dims[1:]) or len(dims) != len(out.shape) + 1:
            problems.append(
                f"output {out.name!r}: contract per-row shape {out.shape}, {where} shape {dims}"
            )
    if problems:
        raise ModelContractError(
            f"model {contract.name!r}: the contract does not match the {where}: "
            + "; ".join(problems)
        )


def _shape_matches(expected: Sequence[int], dims: Sequence[Any]) -> bool:
    if len(expected) != len(dims):
        return False
    # symbolic/unknown dims (str/None) accept anything
    return all(not isinstance(d, int) or d == e for e, d in zip(expected, dims, strict=True))


def check_graph_against_contract(path: Path, contract: ModelContract) -> dict[str, Any]:
    """Compare the file's graph inputs/outputs/opset with ``contract``; return the signature."""
    st = path.stat()
    sig = _graph_signature(str(path), st.st_size, st.st_mtime_ns)
    _compare_io(contract, sig["inputs"], sig["outputs"], "ONNX graph")
    if sig["opset"] is not None and contract.opset and sig["opset"] != contract.opset:
        raise ModelContractError(
            f"model {contract.name!r}: contract says opset {contract.opset}, the ONNX file "
            f"{path.name} declares opset {sig['opset']}"
        )
    return sig


def check_session_against_contract(session: Any, contract: ModelContract, path: Path) -> None:
    """Compare a live session's inputs/outputs (names, per-row shapes, dtypes) with ``contract``."""
    def describe(values: Any) -> dict[str, tuple[np.dtype | None, list[Any]]]:
        return {v.name: (_ORT_DTYPES.get(v.type), list(v.shape)) for v in values}

    _compare_io(
        contract, describe(session.get_inputs()), describe(session.get_outputs()),
        f"ONNX Runtime session of {path.name}",
    )


def session_output_dtype(session: Any, name: str) -> np.dtype:
    """dtype of a session's output ``name`` (float32 if unknown)."""
    for o in session.get_outputs():
        if o.name == name:
            return _ORT_DTYPES.get(o.type, np.dtype("float32"))
    return np.dtype("float32")


def output_dtype(model_path: Path, name: str) -> np.dtype:
    """dtype of output ``name`` as the ONNX file declares it (float32 if it does not)."""
    return graph_signature(model_path)["outputs"].get(name, (None, []))[0] or np.dtype("float32")


def check_feature_names(contract: ModelContract) -> None:
    """Refuse a jet-level contract naming a feature coffea_ad cannot compute.

    ``score_events`` builds jet-level inputs from :data:`coffea_ad.features.JET_FEATURES`
    and constituent inputs from :data:`coffea_ad.features.PARTICLE_FEATURES`; a name outside
    them would only fail on the first chunk of a run. Event-level features may be any
    branch of the events, so they are not checked here.

    Raises:
        ModelContractError: naming the input, the unknown feature and the valid ones.
    """
    if contract.level != "jet":
        return
    from coffea_ad.errors import nearest_first
    from coffea_ad.features import JET_FEATURES, PARTICLE_FEATURES
    from coffea_ad.inference._layout import is_mask_spec

    for spec in contract.inputs:
        if is_mask_spec(spec) or spec.graph is not None:
            continue
        valid = PARTICLE_FEATURES if spec.pad_length is not None else JET_FEATURES
        kind = "particle" if spec.pad_length is not None else "jet"
        for name in spec.features:
            if name not in valid:
                raise ModelContractError(
                    f"model {contract.name!r} input {spec.name!r}: unknown {kind} feature "
                    f"{name!r}; valid {kind} features, nearest first: "
                    f"{nearest_first(name, valid, limit=8)}"
                )
