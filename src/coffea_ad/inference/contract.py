"""The model contract: the sidecar JSON that travels with every ONNX model.

``models/NAME.onnx`` comes with ``models/NAME.json``. Inference reads the contract instead of
re-deriving preprocessing (weaver-core style): feature order, scaling, padding, outputs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from coffea_ad.errors import ModelContractError

__all__ = [
    "CONTRACT_VERSION",
    "InputSpec",
    "ModelContract",
    "OutputSpec",
    "file_sha256",
    "sidecar_path",
]

CONTRACT_VERSION = 1

ModelKind = Literal[
    "autoencoder",
    "vae",
    "vae_classifier",
    "particle_vae",
    "graph_autoencoder",
    "cvae",
    "quantile_regression",
    "pca",
    "bdt",
    "classifier",
]


def sidecar_path(model_path: str | Path) -> Path:
    """``models/NAME.onnx`` -> ``models/NAME.json``."""
    return Path(model_path).with_suffix(".json")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class InputSpec:
    """One ONNX input.

    Args:
        name: the ONNX graph input name.
        features: ordered feature names along the last axis.
        shape: per-row shape without the batch axis, e.g. ``[6]`` for a dense AE on six jet
            features, ``[50, 7]`` for 50 constituents with 7 features, ``[50]`` for a mask.
        dtype: numpy dtype name of the input.
        scaling: ``"external"``: the scorer applies ``(x - centre) / scale`` per feature;
            ``"in_graph"``: the graph standardizes itself, feed raw features; ``"none"``.
        centre, scale: one value per feature when ``scaling == "external"``.
        pad_length: for constituent inputs, the fixed number of constituents (rows are
            truncated/padded to it); ``None`` for dense inputs.
        pad_value: value used for padded entries.
        graph: a derived input, computed by the scorer from another input of every batch
            instead of given: ``{"kind": "normalized_adjacency", "of": INPUT, "eta": FEATURE,
            "phi": FEATURE, "r_c": R, "adjacency": "hard" | "weighted", "periodic_phi":
            bool}`` is the ``[n, n]`` ``D^-1/2 A D^-1/2`` ΔR adjacency of the padded input
            ``INPUT`` (:func:`coffea_ad.features.normalized_adjacency`); ``None``: given.
    """

    name: str
    features: list[str]
    shape: list[int]
    dtype: str = "float32"
    scaling: Literal["external", "in_graph", "none"] = "none"
    centre: list[float] | None = None
    scale: list[float] | None = None
    pad_length: int | None = None
    pad_value: float = 0.0
    graph: dict[str, Any] | None = None

    def validate(self) -> None:
        if not self.features and self.shape:
            raise ModelContractError(f"input {self.name!r}: no feature names given")
        # masks/adjacencies have their own last axis and list one pseudo-feature
        if self.shape and len(self.features) > 1 and self.shape[-1] != len(self.features):
            raise ModelContractError(
                f"input {self.name!r}: last axis of shape {self.shape} is {self.shape[-1]}, "
                f"but {len(self.features)} feature names are listed: {self.features}"
            )
        if self.scaling == "external":
            for what, values in (("centre", self.centre), ("scale", self.scale)):
                if values is None or len(values) != len(self.features):
                    n = None if values is None else len(values)
                    raise ModelContractError(
                        f"input {self.name!r}: scaling is 'external' so {what} needs one value "
                        f"per feature ({len(self.features)}), found {n}"
                    )
            if any(s == 0 for s in self.scale or []):
                raise ModelContractError(f"input {self.name!r}: a scale of 0 in {self.scale}")


@dataclass
class OutputSpec:
    """One ONNX output: its name, meaning (``score``, ``reconstruction``, ``latent_mean``,
    ``latent_logvar``, ``probability``...) and per-row shape without the batch axis."""

    name: str
    meaning: str
    shape: list[int] = field(default_factory=list)


@dataclass
class ModelContract:
    """Everything inference needs to feed a model the inputs it was trained on.

    ``level`` says what one row is: a jet of collection ``jets`` (scores go back onto the
    events x jets structure) or an event. ``score`` names the output that is the anomaly
    score (larger = more anomalous). ``sources`` says, per jet collection the model may
    read, where each feature comes from (``"branch:FIELD"``, ``"branch:NUM/DEN"`` or
    ``"constituents"``; a feature not listed: its registry definition), e.g. ``{"JetsAK8":
    {"ptd": "branch:ptD", ...}}`` for TreeMaker; ``source_notes`` states the definitional
    differences between those sources and the ones the model was trained on.
    """

    name: str
    kind: str
    level: Literal["jet", "event"]
    inputs: list[InputSpec]
    outputs: list[OutputSpec]
    score: str
    opset: int
    jets: str | None = "FatJet"
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    contract_version: int = CONTRACT_VERSION
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    source_notes: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise :class:`ModelContractError` if the contract is internally inconsistent."""
        if self.contract_version > CONTRACT_VERSION:
            raise ModelContractError(
                f"contract version {self.contract_version} is newer than this coffea-ad "
                f"understands ({CONTRACT_VERSION}); upgrade coffea-ad"
            )
        if self.level not in ("jet", "event"):
            raise ModelContractError(f"level must be 'jet' or 'event', found {self.level!r}")
        if not self.inputs:
            raise ModelContractError("contract lists no inputs")
        for spec in self.inputs:
            spec.validate()
            if spec.graph is not None:
                self._validate_graph(spec)
        names = [o.name for o in self.outputs]
        if self.score not in names:
            raise ModelContractError(
                f"score output {self.score!r} is not among the outputs {names}"
            )

    def _validate_graph(self, spec: InputSpec) -> None:
        graph = spec.graph or {}
        where = f"input {spec.name!r} (derived graph input)"
        keys = {"kind", "of", "eta", "phi", "r_c", "adjacency", "periodic_phi"}
        if set(graph) != keys or graph["kind"] != "normalized_adjacency":
            raise ModelContractError(f"{where}: expected the keys {sorted(keys)} with kind "
                                     f"'normalized_adjacency', found {graph}")
        source = next((s for s in self.inputs if s.name == graph["of"]), None)
        if (source is None or source.pad_length is None or source.graph is not None
                or len(source.shape) != 2):
            raise ModelContractError(f"{where}: 'of' must name a padded particle input, "
                                     f"found {graph['of']!r} (inputs: {self.input_names})")
        missing = [graph[k] for k in ("eta", "phi") if graph[k] not in source.features]
        if missing:
            raise ModelContractError(f"{where}: {missing} not among the features of "
                                     f"{source.name!r}: {source.features}")
        n = source.pad_length
        if spec.shape != [n, n] or spec.dtype != "float32":
            raise ModelContractError(f"{where}: expected float32 shape {[n, n]}, found "
                                     f"{spec.dtype} {spec.shape}")
        if graph["adjacency"] not in ("hard", "weighted") or not float(graph["r_c"]) > 0:
            raise ModelContractError(f"{where}: adjacency must be 'hard' or 'weighted' with "
                                     f"r_c > 0, found {graph['adjacency']!r}, {graph['r_c']}")

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    @property
    def features(self) -> list[str]:
        """Ordered feature names of the first input (the dense models have only one)."""
        return list(self.inputs[0].features)

    def check_features(self, given: list[str], *, input_name: str | None = None) -> None:
        """Refuse features that differ from the contract, naming what differs."""
        spec = self.input(input_name) if input_name else self.inputs[0]
        expected = list(spec.features)
        given = list(given)
        if given == expected:
            return
        missing = [f for f in expected if f not in given]
        extra = [f for f in given if f not in expected]
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        if not parts:
            parts.append("same names in a different order")
        raise ModelContractError(
            f"model {self.name!r} input {spec.name!r} expects features {expected}, "
            f"given {given}: " + "; ".join(parts)
        )

    def input(self, name: str) -> InputSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise ModelContractError(
            f"model {self.name!r} has no input {name!r}; inputs: {self.input_names}"
        )

    # --------------------------------------------------------------- (de)serialize
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for spec in data["inputs"]:
            if spec["graph"] is None:  # given inputs: the sidecars of earlier versions
                del spec["graph"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelContract:
        data = dict(data)
        try:
            data["inputs"] = [InputSpec(**i) for i in data["inputs"]]
            data["outputs"] = [OutputSpec(**o) for o in data["outputs"]]
            contract = cls(**data)
        except (KeyError, TypeError) as err:
            raise ModelContractError(f"malformed model contract: {err}") from err
        contract.validate()
        return contract

    def write(self, path: str | Path) -> Path:
        """Write the contract as JSON (to the sidecar of ``path`` if it ends in .onnx)."""
        path = Path(path)
        if path.suffix == ".onnx":
            path = sidecar_path(path)
        self.validate()
        from coffea_ad.atomic import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path) -> ModelContract:
        """Read a contract from JSON (or from the sidecar of an .onnx path)."""
        path = Path(path)
        if path.suffix == ".onnx":
            path = sidecar_path(path)
        if not path.is_file():
            raise ModelContractError(
                f"no model contract at {path}: every model NAME.onnx needs its sidecar NAME.json"
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ModelContractError(f"model contract {path} is not valid JSON: {err}") from err
        return cls.from_dict(data)
