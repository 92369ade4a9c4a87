"""Working points of a model as correctionlib JSON next to it (``NAME_wp.json``).

The AE tag threshold is part of an analysis's calibration, like a b-tagging working point:
it is written once (from background efficiency on held-out events) and read by every
processor and by any other tool that reads correctionlib. One correction per working point,
input the jet p_T (GeV), output the score threshold: a constant, or a ``Binning`` in p_T with
``flow="clamp"`` (jets beyond the outer edges take the outer bins' thresholds).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.errors import InvalidArgumentError, MissingFileError, UnknownNameError

__all__ = [
    "WorkingPoint",
    "read_working_point",
    "working_point_path",
    "write_working_point",
]

#: The correction's input variable: the jet p_T in GeV.
PT_INPUT = "pt"


def working_point_path(model_path: str | os.PathLike[str]) -> Path:
    """``models/NAME.onnx`` -> ``models/NAME_wp.json``."""
    path = Path(model_path)
    return path.with_name(f"{path.stem}_wp.json")


def write_working_point(
    model_path: str | os.PathLike[str],
    threshold: float | Sequence[float],
    *,
    pt_edges: Sequence[float] | None = None,
    name: str = "tag",
    description: str = "",
    path: str | os.PathLike[str] | None = None,
) -> Path:
    """Write (or add to) the model's working-point file: the threshold ``name`` as a
    correctionlib correction of the jet p_T.

    Args:
        model_path: the ``.onnx`` model the threshold belongs to.
        threshold: one number (constant), or one per p_T bin when ``pt_edges`` is given.
        pt_edges: bin edges in GeV (``len(threshold) + 1``, increasing), or ``None``.
        name: working point name (``"tag"``, ``"loose"``, ...); other working points already in
            the file are kept.
        description: how the threshold was obtained (sample, background efficiency).
        path: where to write; default :func:`working_point_path` of the model.

    Returns:
        The path written (temp file + rename: a reader never sees a half-written file).
    """
    import correctionlib.schemav2 as cs

    out = Path(path) if path is not None else working_point_path(model_path)
    if pt_edges is None:
        if np.ndim(threshold) != 0:
            raise InvalidArgumentError(f"a constant working point takes one number, given {threshold!r}")
        data: Any = float(threshold)  # type: ignore[arg-type]
    else:
        edges = [float(e) for e in pt_edges]
        values = [float(v) for v in np.atleast_1d(threshold)]
        if len(edges) != len(values) + 1 or np.any(np.diff(edges) <= 0):
            raise InvalidArgumentError(
                f"binned working point: expected increasing pt_edges of length "
                f"len(threshold) + 1 = {len(values) + 1}, given {edges}"
            )
        data = cs.Binning(nodetype="binning", input=PT_INPUT, edges=edges, content=values,
                          flow="clamp")
    if not np.all(np.isfinite(np.atleast_1d(threshold))):
        raise InvalidArgumentError(f"working point thresholds must be finite, given {threshold!r}")
    correction = cs.Correction(
        name=name, version=1,
        description=(f"{description} " if description else "")
        + f"Score threshold of model {Path(model_path).name}: a jet is tagged when its score "
        "is above it (constant, or binned in jet p_T with the outer bins extended).",
        inputs=[cs.Variable(name=PT_INPUT, type="real", description="jet p_T in GeV")],
        output=cs.Variable(name="threshold", type="real"),
        data=data,
    )
    corrections = []
    if out.is_file():
        kept = json.loads(out.read_text())["corrections"]
        corrections = [cs.Correction.model_validate(c) for c in kept if c["name"] != name]
    cset = cs.CorrectionSet(schema_version=2, corrections=[*corrections, correction])
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(cset.model_dump_json(exclude_unset=True, indent=1))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


@dataclass
class WorkingPoint:
    """A threshold read from correctionlib JSON; picklable (keeps the JSON text, the
    evaluator is rebuilt on use).

    Attributes:
        name: the working point's name.
        source: the file it came from.
        text: the JSON text of the correction set.
    """

    name: str
    source: str
    text: str

    def __post_init__(self) -> None:
        self._correction: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "text": self.text}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._correction = None

    @property
    def correction(self) -> Any:
        if self._correction is None:
            import correctionlib

            self._correction = correctionlib.CorrectionSet.from_string(self.text)[self.name]
        return self._correction

    def threshold(self, pt: Any) -> np.ndarray:
        """Thresholds for jets of p_T ``pt`` (GeV; numpy, any shape; flat awkward works
        through numpy), float64 of the same shape."""
        values = np.asarray(pt, dtype=np.float64)
        return np.asarray(self.correction.evaluate(values.ravel()),
                          dtype=np.float64).reshape(values.shape)


def read_working_point(source: str | os.PathLike[str], *, name: str = "tag") -> WorkingPoint:
    """Read the working point ``name`` from a correctionlib JSON file, or from the
    ``NAME_wp.json`` next to a ``.onnx`` model given instead.

    Raises:
        FileNotFoundError: no such file (the message names the model's expected file).
        UnknownNameError: the file has no correction ``name`` (lists those it has).
    """
    path = Path(source)
    if path.suffix == ".onnx":
        path = working_point_path(path)
    if not path.is_file():
        raise MissingFileError(
            f"working point file {path} does not exist (write it with "
            "coffea_ad.inference.write_working_point, or give the threshold as a number)"
        )
    text = path.read_text()
    names = [c["name"] for c in json.loads(text).get("corrections", [])]
    if name not in names:
        raise UnknownNameError("working point", name, names)
    wp = WorkingPoint(name=name, source=str(path), text=text)
    wp.correction  # noqa: B018 -- a malformed file fails here, on the client
    return wp
