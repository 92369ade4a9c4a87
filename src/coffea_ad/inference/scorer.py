"""Score awkward, dask-awkward or numpy inputs with an ONNX model and its contract.

:class:`OnnxScorer` follows coffea's ``numpy_call_wrapper`` contract (prepare awkward inputs ->
numpy call -> back to awkward; dispatch on awkward / dask-awkward / numpy) with three
differences that matter at scale:

* the ONNX Runtime session is created lazily, **once per process** (a process-wide cache keyed
  by model file and session options), so a scorer unpickled for every chunk by coffea's
  executors still reuses one session per worker;
* in dask mode the model is never run on the client: on typetracer (metadata) inputs the output
  type is built from the contract alone (coffea's wrappers run the model on length-one arrays);
* inputs are checked against the contract and against the session's real inputs before any
  row is scored, and NaN/inf inputs follow an explicit policy.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import awkward as ak
import numpy as np

from coffea_ad._optional import require
from coffea_ad.errors import (
    MissingBranchError,
    ModelContractError,
    ModelFileError,
    NonFiniteInputError,
)
from coffea_ad.inference.contract import InputSpec, ModelContract, sidecar_path
from coffea_ad.inference.providers import select_providers

__all__ = [
    "FLAG_VALUE",
    "NONFINITE_MASK",
    "GraphOptimization",
    "NonFinitePolicy",
    "OnnxScorer",
    "ScorerStats",
    "add_scores",
    "graph_signature",
    "release_sessions",
    "session_creations",
]

GraphOptimization = Literal["disable", "basic", "extended", "all"]
NonFinitePolicy = Literal["raise", "flag"]

#: Sentinel written into every output of a row whose inputs hold NaN/inf under
#: ``nonfinite="flag"``. Negative, so it never passes an anomaly cut ``score > c`` of a
#: reconstruction-loss score (losses are >= 0) and lands in the underflow of a score axis
#: starting at 0; the boolean :data:`NONFINITE_MASK` output says which rows carry it.
FLAG_VALUE: float = -1.0

#: Key of the boolean "inputs were not finite" output of :meth:`OnnxScorer.outputs` under
#: ``nonfinite="flag"``.
NONFINITE_MASK = "nonfinite"

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


# ----------------------------------------------------------------------------- session cache
# One InferenceSession per (model file, options) per process. Sessions are thread-safe for
# run(), so threads of one worker share it too.
_SESSIONS: dict[tuple[Any, ...], Any] = {}
_SESSIONS_LOCK = threading.Lock()
_SESSION_CREATIONS = 0


def session_creations() -> int:
    """Number of ONNX Runtime sessions :class:`OnnxScorer` created in this process so far."""
    return _SESSION_CREATIONS


_GENERATION = 0  # bumped by release_sessions so instances drop the sessions they hold


def release_sessions() -> None:
    """Drop every cached session of this process (they are re-created on next use)."""
    global _GENERATION
    with _SESSIONS_LOCK:
        _SESSIONS.clear()
        _GENERATION += 1


@dataclass(frozen=True)
class ScorerStats:
    """Counters of one scorer instance (in dask mode they live on the workers' copies).

    Attributes:
        calls: scoring calls that ran the model (typetracer calls excluded).
        rows: rows (jets or events) scored.
        batches: ``session.run`` calls.
        nonfinite_rows: rows whose inputs held NaN/inf and got :data:`FLAG_VALUE`.
        session_creations: sessions created by any scorer in this process.
    """

    calls: int = 0
    rows: int = 0
    batches: int = 0
    nonfinite_rows: int = 0
    session_creations: int = 0


class OnnxScorer:
    """Score events or jets with an ONNX model described by its sidecar contract.

    Args:
        model_path: the ``.onnx`` file; its contract is read from the ``.json`` next to it.
        providers: execution providers in order of preference (names or aliases such as
            ``"cuda"``); ``None`` prefers TensorRT, then CUDA, then CPU, among those this
            ``onnxruntime`` build offers (see :func:`~coffea_ad.inference.providers.select_providers`).
        batch_size: rows per ``session.run`` call.
        intra_op_threads: ONNX Runtime intra-op threads; ``None`` lets ONNX Runtime decide
            (all cores), set 1 on batch workers that run one task per core.
        graph_optimization: ONNX Runtime graph optimization level.
        nonfinite: ``"raise"``: NaN/inf in an input raises :class:`NonFiniteInputError`
            naming the features and counts before any row is scored; ``"flag"``: such rows
            get :data:`FLAG_VALUE` in every output, are counted in :attr:`stats`, and
            :meth:`outputs` adds the boolean mask :data:`NONFINITE_MASK`.

    Raises:
        ModelFileError: the model file is missing, truncated or not ONNX.
        ModelContractError: the sidecar is missing/invalid or disagrees with the graph
            (input/output names, per-row shapes, dtypes, opset).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        providers: Sequence[str] | None = None,
        batch_size: int = 65536,
        intra_op_threads: int | None = None,
        graph_optimization: GraphOptimization = "all",
        nonfinite: NonFinitePolicy = "raise",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, found {batch_size}")
        if graph_optimization not in ("disable", "basic", "extended", "all"):
            raise ValueError(
                "graph_optimization must be one of 'disable', 'basic', 'extended', 'all', "
                f"found {graph_optimization!r}"
            )
        if nonfinite not in ("raise", "flag"):
            raise ValueError(f"nonfinite must be 'raise' or 'flag', found {nonfinite!r}")
        self.model_path = Path(model_path).resolve()
        self.providers = None if providers is None else tuple(providers)
        self.batch_size = int(batch_size)
        self.intra_op_threads = intra_op_threads
        self.graph_optimization: GraphOptimization = graph_optimization
        self.nonfinite: NonFinitePolicy = nonfinite
        graph_signature(self.model_path)  # a missing/corrupt file is the first thing to report
        self.contract = ModelContract.read(sidecar_path(self.model_path))
        # Refuse a contract that disagrees with the graph now, on the client, before any
        # event is read; the session's own inputs are checked again where it is created.
        _check_graph_against_contract(self.model_path, self.contract)
        self._centre, self._inv_scale = {}, {}
        for spec in self.contract.inputs:
            if spec.scaling == "external":
                self._centre[spec.name] = np.asarray(spec.centre, dtype=spec.dtype)
                # multiply by 1/scale: one pass fewer than a division over [n, F]
                self._inv_scale[spec.name] = (1.0 / np.asarray(spec.scale, np.float64)).astype(
                    spec.dtype
                )
        self._session: Any = None
        self._generation = _GENERATION
        self._lock = threading.Lock()
        self._counts = {"calls": 0, "rows": 0, "batches": 0, "nonfinite_rows": 0}

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"] = None  # sessions are not picklable; re-created on the worker
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"OnnxScorer({str(self.model_path)!r}, model={self.contract.name!r}, "
            f"level={self.contract.level!r}, features={self.contract.features}, "
            f"batch_size={self.batch_size}, nonfinite={self.nonfinite!r})"
        )

    # ------------------------------------------------------------------ session
    @property
    def session(self) -> Any:
        """The process's ``onnxruntime.InferenceSession`` for this model (created on first use)."""
        if self._session is None or self._generation != _GENERATION:
            self._generation = _GENERATION
            self._session = self._get_session()
        return self._session

    def _session_key(self) -> tuple[Any, ...]:
        st = self.model_path.stat()
        # size and mtime: a model file rewritten in place gets a fresh session
        return (
            str(self.model_path),
            st.st_size,
            st.st_mtime_ns,
            self.providers,
            self.intra_op_threads,
            self.graph_optimization,
        )

    def _get_session(self) -> Any:
        global _SESSION_CREATIONS
        _check_model_file(self.model_path)
        key = self._session_key()
        with _SESSIONS_LOCK:
            session = _SESSIONS.get(key)
            if session is None:
                session = _create_session(
                    self.model_path,
                    providers=select_providers(self.providers),
                    intra_op_threads=self.intra_op_threads,
                    graph_optimization=self.graph_optimization,
                )
                _check_session_against_contract(session, self.contract, self.model_path)
                _SESSIONS[key] = session
                _SESSION_CREATIONS += 1
        return session

    @property
    def provider(self) -> str:
        """The execution provider that runs the model (the first of ``session.get_providers()``)."""
        return self.session.get_providers()[0]

    @property
    def stats(self) -> ScorerStats:
        """Counters of this instance plus the process-wide session-creation count."""
        return ScorerStats(**self._counts, session_creations=_SESSION_CREATIONS)

    # ------------------------------------------------------------------ public calls
    def __call__(self, x: Any) -> Any:
        """The score output with the structure of ``x``.

        Args:
            x: an awkward record array with one field per contract feature at any jagged
                depth (``events * jets * {eta, phi, ...}``; extra fields are ignored), a
                dask-awkward array of the same, a numpy ``[n, n_features]`` array in contract
                order, or a ``{input_name: array}`` mapping for multi-input models.

        Returns:
            ``events * jets * float32`` for awkward input (dask-awkward for dask input),
            numpy ``[n]`` for numpy input.
        """
        return self._dispatch(x, only=self.contract.score)

    def outputs(self, x: Any) -> dict[str, Any]:
        """Every model output (plus :data:`NONFINITE_MASK` under ``nonfinite="flag"``),
        each with the structure of ``x`` (see :meth:`__call__`)."""
        return self._dispatch(x, only=None)

    def score_events(self, events: Any) -> Any:
        """Compute the contract's inputs from NanoEvents and score them.

        Jet-level contracts take their inputs from
        ``coffea_ad.features.jet_features(events, contract.features, jets=contract.jets)``,
        or, for a padded constituent input (plus its mask), from
        ``coffea_ad.features.particle_list`` of the jets' constituents;
        event-level contracts from the event fields named like the features, else from
        ``coffea_ad.features.event_variables`` (SVJ/dijet: ``mjj, mt, met, dphi_min, ...``)
        or ``coffea_ad.features.vbs_variables`` (``lep1_pt, zep1, mll, ...``).

        Args:
            events: NanoEvents (eager, virtual or dask).

        Returns:
            ``events * jets * float32`` (jet level) or ``events * float32`` (event level).
        """
        if self._particle_specs():
            return self._score_particle_events(events)
        return self(self.features_from_events(events))

    def _particle_specs(self) -> list[InputSpec]:
        return [s for s in self.contract.inputs if s.pad_length is not None and not _is_mask_spec(s)]

    def _score_particle_events(self, events: Any) -> Any:
        """Constituent-level contracts: padded particle lists of every jet, scored per jet."""
        from coffea_ad.features import jet_constituents, particle_list

        if self.contract.level != "jet" or len(self._particle_specs()) != 1:
            raise ModelContractError(
                f"model {self.contract.name!r}: score_events builds one padded particle input "
                f"per jet; this contract has inputs {self.contract.input_names} at level "
                f"{self.contract.level!r}. Compute the inputs and call the scorer on them"
            )
        spec = self._particle_specs()[0]
        jets_name = self.contract.jets or "FatJet"
        jets = events[jets_name]
        values, mask = particle_list(
            jet_constituents(events, jets=jets_name), jets, n=spec.pad_length,
            features=spec.features, pad_value=spec.pad_value,
        )
        feeds: dict[str, Any] = {spec.name: values}
        for other in self.contract.inputs:
            if other is not spec:
                feeds[other.name] = mask  # _is_mask_spec: the padding mask of the same length
        if _is_dask_awkward(values):
            dak = require("dask_awkward", purpose="scoring dask-awkward arrays")
            flat = self._call_dask(feeds, only=self.contract.score)
            with warnings.catch_warnings():
                # particle_list keeps the events' partitions (one row per jet, in order), so
                # counts and scores are partition-compatible; dask-awkward cannot know it
                warnings.filterwarnings("ignore", message="Please ensure that",
                                        category=UserWarning)
                return dak.unflatten(flat, dak.num(jets, axis=1))
        feeds = {k: np.asarray(v) for k, v in feeds.items()}
        flat = self._run_numpy(feeds)[self.contract.score]
        counts = ak.to_numpy(ak.num(jets, axis=1))
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return _ListTemplate([("offsets", offsets)], len(flat)).wrap(flat)

    def features_from_events(self, events: Any) -> Any:
        """The record array of contract features for ``events`` (see :meth:`score_events`)."""
        if self.contract.level == "jet":
            try:
                from coffea_ad.features import jet_features
            except ImportError as err:
                raise ImportError(
                    "OnnxScorer.score_events needs coffea_ad.features.jet_features, "
                    f"which cannot be imported: {err}"
                ) from err
            return jet_features(events, self.contract.features, jets=self.contract.jets)
        features = self.contract.features
        available = list(events.fields)
        if all(f in available for f in features):
            return events[features]
        # event-level models of the SVJ/dijet and VBS workflows read the event variables
        # of coffea_ad.features, computed the same way as for training
        from coffea_ad.features import event_variables, vbs_variables

        for table_of, jets in ((event_variables, self.contract.jets or "FatJet"),
                               (vbs_variables, self.contract.jets or "Jet")):
            try:
                table = table_of(events, jets=jets)
            except KeyError:  # MissingBranchError: these events cannot give that table
                continue
            if all(f in table.fields for f in features):
                return table[features]
            available += [f for f in table.fields if f not in available]
        missing = next(f for f in features if f not in available)
        raise MissingBranchError(
            missing, available, where="events and coffea_ad.features event/VBS variables",
            needed_for=f"model {self.contract.name!r}",
        )

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self, x: Any, *, only: str | None) -> Any:
        if _is_dask_awkward(x) or (
            isinstance(x, Mapping) and any(_is_dask_awkward(v) for v in x.values())
        ):
            return self._call_dask(x, only=only)
        if isinstance(x, ak.Array) or (
            isinstance(x, Mapping) and any(isinstance(v, ak.Array) for v in x.values())
        ):
            return self._call_awkward(x, only=only)
        if isinstance(x, Mapping):
            arrays = {k: np.asarray(v) for k, v in x.items()}
        else:
            if len(self.contract.inputs) != 1:
                raise ModelContractError(
                    f"model {self.contract.name!r} has inputs {self.contract.input_names}: "
                    "pass a {input_name: array} mapping, not a single array"
                )
            arrays = {self.contract.inputs[0].name: np.asarray(x)}
        outs = self._run_numpy(arrays)
        return outs[only] if only is not None else outs

    # ------------------------------------------------------------------ numpy core
    def _run_numpy(
        self, arrays: dict[str, np.ndarray], *, owned: bool = False
    ) -> dict[str, np.ndarray]:
        """Check, scale, batch and run ``{input_name: [n, *shape]}``; return every output.

        ``owned``: the arrays are scratch of this scorer and may be modified in place (the
        awkward path); otherwise the caller's arrays are never written to.
        """
        feeds, n = self._check_numpy_inputs(arrays)
        bad = self._nonfinite_rows(feeds, n)
        mine = {k for k, v in feeds.items() if owned or not np.shares_memory(v, arrays[k])}
        for spec in self.contract.inputs:
            if spec.name in self._centre:
                x = feeds[spec.name] if spec.name in mine else feeds[spec.name].copy()
                x -= self._centre[spec.name]
                x *= self._inv_scale[spec.name]
                feeds[spec.name] = x
                mine.add(spec.name)
        if bad is not None:
            for name in feeds:
                # the model never sees NaN/inf: flagged rows are fed zeros and overwritten
                if name not in mine:
                    feeds[name] = feeds[name].copy()
                feeds[name][bad] = 0
        outs = self._run_batches(feeds, n)
        if self.nonfinite == "flag":
            mask = np.zeros(n, dtype=bool) if bad is None else bad
            if bad is not None:
                for out in outs.values():
                    if np.issubdtype(out.dtype, np.floating):
                        out[mask] = FLAG_VALUE
            outs[NONFINITE_MASK] = mask
        with self._lock:
            self._counts["calls"] += 1
            self._counts["rows"] += n
            self._counts["nonfinite_rows"] += 0 if bad is None else int(bad.sum())
        return outs

    def _run_batches(self, feeds: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        session = self.session
        names = self.contract.output_names
        if n == 0:
            return {o.name: np.zeros((0, *o.shape), dtype=_output_dtype(session, o.name))
                    for o in self.contract.outputs}
        if n <= self.batch_size:
            results = session.run(names, feeds)
            with self._lock:
                self._counts["batches"] += 1
            return dict(zip(names, results, strict=True))
        outs: dict[str, np.ndarray] = {}
        nbatches = 0
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            results = session.run(names, {k: v[start:stop] for k, v in feeds.items()})
            nbatches += 1
            for name, res in zip(names, results, strict=True):
                if name not in outs:  # allocate once, fill batch by batch (no concatenate)
                    outs[name] = np.empty((n, *res.shape[1:]), dtype=res.dtype)
                outs[name][start:stop] = res
        with self._lock:
            self._counts["batches"] += nbatches
        return outs

    def _check_numpy_inputs(
        self, arrays: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], int]:
        expected = self.contract.input_names
        if sorted(arrays) != sorted(expected):
            raise ModelContractError(
                f"model {self.contract.name!r} expects inputs {expected}, given "
                f"{sorted(arrays)}: missing {[e for e in expected if e not in arrays]}, "
                f"unexpected {[g for g in arrays if g not in expected]}"
            )
        feeds: dict[str, np.ndarray] = {}
        n = None
        for spec in self.contract.inputs:
            x = arrays[spec.name]
            want = tuple(spec.shape)
            if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
                raise ModelContractError(
                    f"model {self.contract.name!r} input {spec.name!r} expects rows of shape "
                    f"{list(want)} (features {spec.features}), given an array of shape "
                    f"{list(x.shape)}"
                )
            if n is not None and len(x) != n:
                raise ModelContractError(
                    f"inputs of model {self.contract.name!r} disagree on the number of rows: "
                    f"{n} vs {len(x)} for {spec.name!r}"
                )
            n = len(x)
            dtype = np.dtype(spec.dtype)
            if not np.can_cast(x.dtype, dtype, casting="same_kind"):
                raise ModelContractError(
                    f"model {self.contract.name!r} input {spec.name!r} expects {dtype}, given "
                    f"{x.dtype} (not castable without changing kind)"
                )
            feeds[spec.name] = np.ascontiguousarray(x, dtype=dtype)
        return feeds, int(n or 0)

    def _nonfinite_rows(self, feeds: dict[str, np.ndarray], n: int) -> np.ndarray | None:
        """Boolean [n] of rows with NaN/inf in any float input, or None when all are finite."""
        bad = None
        per_feature: list[str] = []
        for spec in self.contract.inputs:
            x = feeds[spec.name]
            if not np.issubdtype(x.dtype, np.floating) or n == 0:
                continue
            finite = np.isfinite(x)
            if finite.all():
                continue
            notfin = ~finite
            rows = notfin.reshape(n, -1).any(axis=1)
            bad = rows if bad is None else bad | rows
            if self.nonfinite == "raise":
                # count per feature along the last axis (padded inputs: summed over slots)
                counts = notfin.reshape(-1, x.shape[-1]).sum(axis=0) if x.ndim > 1 else [notfin.sum()]
                names = spec.features if len(spec.features) == len(counts) else [spec.name]
                per_feature += [
                    f"{f!r}: {int(c)}" for f, c in zip(names, counts, strict=True) if c
                ]
        if bad is not None and self.nonfinite == "raise":
            raise NonFiniteInputError(
                f"model {self.contract.name!r}: {int(bad.sum())} of {n} rows have NaN/inf "
                f"inputs (non-finite values per feature: {', '.join(per_feature)}); expected "
                "finite inputs. Fix the features or score with nonfinite='flag'"
            )
        return bad

    # ------------------------------------------------------------------ awkward
    def _call_awkward(self, x: Any, *, only: str | None) -> Any:
        specs = self.contract.inputs
        given = _as_input_mapping(x, self.contract)
        template = None
        if ak.backend(*given.values()) == "typetracer":
            return self._typetracer_outputs(given, only=only)
        arrays: dict[str, np.ndarray] = {}
        for spec in specs:
            if spec.name not in given and _is_mask_spec(spec):
                continue  # derived below from the constituent input of the same length
            arr, tmpl = _awkward_to_numpy(given[spec.name], spec, self.contract)
            arrays[spec.name] = arr
            template = tmpl if template is None else template
        for spec in specs:
            if spec.name not in arrays:
                arrays[spec.name] = _derive_mask(given, spec, self.contract)
        outs = self._run_numpy(arrays, owned=True)
        wanted = [only] if only is not None else list(outs)
        result = {k: _graft(template, outs[k]) for k in wanted}
        return result[only] if only is not None else result

    def _typetracer_outputs(self, given: dict[str, ak.Array], *, only: str | None) -> Any:
        """Output types for typetracer inputs, from the contract alone (no model run).

        The feature columns are touched so that dask-awkward's column optimization reads
        them; nothing else is.
        """
        template = None
        for spec in self.contract.inputs:
            if spec.name not in given:
                continue
            arr = given[spec.name]
            if not arr.fields and _is_prepadded(arr, spec):
                ak.typetracer.touch_data(arr)
                if template is None:
                    template = arr
                    for _ in spec.shape:  # one number per row: drop the per-row axes
                        template = template[:, 0]
                continue
            fields = spec.features if arr.fields else [None]
            for f in fields:
                col = arr[f] if f is not None else arr
                ak.typetracer.touch_data(col)
                if template is None:
                    template = col if spec.pad_length is None else ak.num(col, axis=-1)
        out_specs = {o.name: (o.shape, _contract_out_dtype(self, o.name)) for o in self.contract.outputs}
        if self.nonfinite == "flag":
            out_specs[NONFINITE_MASK] = ([], np.dtype(bool))
        wanted = [only] if only is not None else list(out_specs)
        result = {}
        for k in wanted:
            shape, dtype = out_specs[k]
            form = _replace_leaf_form(template.layout.form, dtype, shape)
            result[k] = ak.Array(
                form.length_zero_array().to_typetracer(forget_length=True)
            )
        return result[only] if only is not None else result

    # ------------------------------------------------------------------ dask-awkward
    def _call_dask(self, x: Any, *, only: str | None) -> Any:
        dak = require("dask_awkward", purpose="scoring dask-awkward arrays")
        given = _as_input_mapping(x, self.contract)
        names = list(given)
        # select only the feature columns, so the optimizer reads nothing else
        args = []
        for name in names:
            arr = given[name]
            spec = self.contract.input(name)
            args.append(arr[spec.features] if arr.fields else arr)
        metas = {n: a._meta for n, a in zip(names, args, strict=True)}
        meta_out = self._typetracer_outputs(metas, only=only)
        if only is None:
            meta_out = ak.zip(meta_out, depth_limit=_list_depth(next(iter(meta_out.values()))))
        fn = _PartitionCall(self, names, only)
        out = dak.map_partitions(
            fn,
            *args,
            label=f"onnx-{self.contract.name}",
            meta=meta_out,
        )
        if only is not None:
            return out
        return {k: out[k] for k in meta_out.fields}


class _PartitionCall:
    """What dask-awkward runs per partition: the scorer on one chunk (picklable)."""

    def __init__(self, scorer: OnnxScorer, names: list[str], only: str | None) -> None:
        self.scorer, self.names, self.only = scorer, names, only

    def __call__(self, *arrays: ak.Array) -> ak.Array:
        out = self.scorer._call_awkward(dict(zip(self.names, arrays, strict=True)), only=self.only)
        if self.only is None:
            return ak.zip(out, depth_limit=_list_depth(next(iter(out.values()))))
        return out


# ----------------------------------------------------------------------------- helpers
def _is_dask_awkward(x: Any) -> bool:
    return type(x).__module__.startswith("dask_awkward") and hasattr(x, "_meta")


def _is_mask_spec(spec: InputSpec) -> bool:
    return spec.pad_length is not None and len(spec.features) == 1 and spec.shape == [spec.pad_length]


def _as_input_mapping(x: Any, contract: ModelContract) -> dict[str, Any]:
    """``x`` as ``{input_name: array}``: a single array feeds the first (or only) input."""
    if isinstance(x, Mapping):
        return dict(x)
    return {contract.inputs[0].name: x}


def _list_depth(arr: ak.Array) -> int:
    """Number of list axes above the per-row values (events*jets*float -> 2)."""
    depth, form = 0, arr.layout.form
    while True:
        if form.is_list or form.is_regular:
            depth += 1
            form = form.content
        elif form.is_option or form.is_indexed:
            form = form.content
        else:
            return max(depth, 1)


def _awkward_to_numpy(
    arr: Any, spec: InputSpec, contract: ModelContract
) -> tuple[np.ndarray, ak.Array]:
    """Flatten one awkward input to numpy ``[n, *spec.shape]`` and return the row template.

    Dense inputs: a record with one field per feature at any jagged depth; each row (leaf
    record) is one model row. Padded inputs (``pad_length``): the innermost list is the
    constituent axis, truncated/padded to ``pad_length`` with ``pad_value``.
    """
    if not isinstance(arr, ak.Array):
        return np.asarray(arr), None  # type: ignore[return-value]
    fields = arr.fields
    if not fields and _is_prepadded(arr, spec):
        # already [n, *shape] (e.g. coffea_ad.features.particle_list output): one row each
        values = ak.to_numpy(arr, allow_missing=False)
        return values, _ListTemplate([], len(values))
    if not fields:
        if len(spec.features) != 1:
            raise ModelContractError(
                f"model {contract.name!r} input {spec.name!r} expects a record with fields "
                f"{spec.features}, given an array without fields of type {arr.type}"
            )
        columns = [arr]
    else:
        missing = [f for f in spec.features if f not in fields]
        if missing:
            raise ModelContractError(
                f"model {contract.name!r} input {spec.name!r} expects features "
                f"{spec.features}; the given record lacks {missing} (it has {fields})"
            )
    dtype = np.dtype(spec.dtype)
    if spec.pad_length is None and fields:
        fast = _dense_rows(arr, spec.features)
        if fast is not None:  # columns straight from the buffers: no flatten, no packing
            template, cols = fast
            out = np.empty((len(cols[0]), len(cols)), dtype=dtype)
            for j, col in enumerate(cols):
                out[:, j] = col
            return out.reshape(len(out), *spec.shape), template
    if fields:
        columns = [arr[f] for f in spec.features]
    if spec.pad_length is None:
        template = _packed_template(columns[0])
        n = _count_leaves(template)
        out = np.empty((n, len(columns)), dtype=dtype)
        for j, col in enumerate(columns):
            flat = ak.to_numpy(ak.flatten(col, axis=None), allow_missing=False)
            if len(flat) != n:
                raise ModelContractError(
                    f"model {contract.name!r}: feature {spec.features[j]!r} has {len(flat)} "
                    f"values but {spec.features[0]!r} has {n}; all features must share the "
                    "jagged structure"
                )
            out[:, j] = flat
        return out.reshape(n, *spec.shape), template
    pad = spec.pad_length
    template = _packed_template(ak.num(columns[0], axis=-1))
    n = _count_leaves(template)
    out = np.empty((n, pad, len(columns)), dtype=dtype)
    for j, col in enumerate(columns):
        padded = ak.fill_none(ak.pad_none(col, pad, axis=-1, clip=True), spec.pad_value, axis=-1)
        out[:, :, j] = ak.to_numpy(ak.flatten(padded, axis=None)).reshape(n, pad)
    return out.reshape(n, *spec.shape), template


def _dense_rows(arr: ak.Array, features: list[str]) -> tuple[Any, list[np.ndarray]] | None:
    """Per-feature 1-d columns of a jagged record and a way back, or ``None``.

    The common case (NanoAOD collections, feature tables): ``ListOffsetArray`` /
    ``RegularArray`` nodes above a ``RecordArray`` of plain numbers. The columns are read
    straight from the buffers (sliced by the offsets, no flatten, no packing), and the
    returned template rebuilds the same list nodes around the output. Anything else (option
    types, ``ListArray`` views, indexed nodes) returns ``None`` and takes the general path.
    """
    node, start, stop = arr.layout, 0, len(arr)
    lists: list[tuple[str, Any]] = []
    while not node.is_record:
        if isinstance(node, ak.contents.ListOffsetArray):
            offsets = np.asarray(node.offsets.data)[start : stop + 1]
            lists.append(("offsets", offsets - offsets[0]))
            start, stop = int(offsets[0]), int(offsets[-1])
        elif isinstance(node, ak.contents.RegularArray):
            lists.append(("regular", node.size))
            start, stop = start * node.size, stop * node.size
        else:
            return None
        node = node.content
    cols = []
    for f in features:
        content = node.content(f)
        if not isinstance(content, ak.contents.NumpyArray) or content.inner_shape:
            return None
        cols.append(np.asarray(content.data)[start:stop])
    return _ListTemplate(lists, stop - start), cols


class _ListTemplate:
    """List nodes (outermost first) to wrap per-row outputs in: the fast path's template."""

    def __init__(self, lists: list[tuple[str, Any]], rows: int) -> None:
        self.lists, self.rows = lists, rows

    def wrap(self, values: np.ndarray) -> ak.Array:
        if len(values) != self.rows:
            raise AssertionError(f"{len(values)} outputs for {self.rows} rows")
        layout: ak.contents.Content = ak.contents.NumpyArray(values)
        for kind, what in reversed(self.lists):
            if kind == "offsets":
                layout = ak.contents.ListOffsetArray(ak.index.Index64(what), layout)
            else:
                layout = ak.contents.RegularArray(layout, what, zeros_length=0)
        return ak.Array(layout)


def _is_prepadded(arr: ak.Array, spec: InputSpec) -> bool:
    """A field-less array whose inner axes are regular and equal ``spec.shape``."""
    form, dims = arr.layout.form, []
    if form.is_list and not form.is_regular:
        form = form.content  # the row axis may be a (jagged-typed) list of regular rows
    while form.is_regular:
        dims.append(form.size)
        form = form.content
    if form.is_numpy:
        dims += list(form.inner_shape)
    return form.is_numpy and dims[-len(spec.shape):] == list(spec.shape) and (
        len(dims) == len(spec.shape) or len(dims) == len(spec.shape) + 1)


def _derive_mask(given: dict[str, Any], spec: InputSpec, contract: ModelContract) -> np.ndarray:
    """A padding mask ``[n, pad_length]`` (1 = real constituent) from a padded input."""
    for other in contract.inputs:
        if other is spec or other.pad_length != spec.pad_length or other.name not in given:
            continue
        arr = given[other.name]
        col = arr[other.features[0]] if arr.fields else arr
        counts = ak.to_numpy(ak.flatten(ak.num(col, axis=-1), axis=None))
        mask = np.arange(spec.pad_length)[None, :] < counts[:, None]
        return mask.astype(np.dtype(spec.dtype))
    raise ModelContractError(
        f"model {contract.name!r} needs input {spec.name!r}, which was not given and cannot "
        f"be derived (no padded input of length {spec.pad_length} was given)"
    )


def _packed_template(arr: ak.Array) -> ak.Array:
    """``arr`` with its leaf holding exactly the reachable values, in ``flatten`` order.

    Byte/bit-masked option nodes keep their masked-out values in the content even when
    packed; turning them into IndexedOptionArrays first makes ``to_packed`` drop them.
    """

    def to_indexed(layout: ak.contents.Content, **kwargs: Any) -> ak.contents.Content | None:
        if layout.is_option and not isinstance(layout, ak.contents.IndexedOptionArray):
            return layout.to_IndexedOptionArray64()
        return None

    if any(k in _form_classes(arr.layout.form) for k in _MASKED):
        arr = ak.transform(to_indexed, arr, highlevel=True)
    return ak.to_packed(arr)


_MASKED = ("ByteMaskedArray", "BitMaskedArray", "UnmaskedArray")


def _form_classes(form: Any) -> set[str]:
    """Class names of every node of a form (cheap: forms are metadata)."""
    out, stack = set(), [form]
    while stack:
        node = stack.pop()
        out.add(type(node).__name__.replace("Form", "Array"))
        if hasattr(node, "contents"):
            stack.extend(node.contents)
        elif hasattr(node, "content"):
            stack.append(node.content)
    return out


def _count_leaves(packed: ak.Array) -> int:
    layout = packed.layout
    while not layout.is_numpy:
        layout = layout.content
    return int(layout.length)


def _graft(template: ak.Array | _ListTemplate | None, values: np.ndarray) -> Any:
    """Put per-row ``values`` ([n, *inner]) back on the jagged structure of ``template``."""
    if template is None:
        return values
    if isinstance(template, _ListTemplate):
        return template.wrap(values)

    def put(layout: ak.contents.Content, **kwargs: Any) -> ak.contents.Content | None:
        if layout.is_record or layout.is_numpy:  # the row node: a record of features or a number
            if layout.length != len(values):
                raise AssertionError(f"{len(values)} outputs for {layout.length} rows")
            return ak.contents.NumpyArray(values)
        return None

    return ak.transform(put, template, highlevel=True)


def _replace_leaf_form(form: Any, dtype: np.dtype, inner_shape: Sequence[int]) -> Any:
    """``form`` with its NumpyForm leaf replaced by ``dtype`` x ``inner_shape``."""
    data = form.to_dict()

    def walk(node: dict[str, Any]) -> dict[str, Any]:
        if node["class"] == "NumpyArray":
            return {
                "class": "NumpyArray",
                "primitive": ak.types.numpytype.dtype_to_primitive(np.dtype(dtype)),
                "inner_shape": list(inner_shape),
                "parameters": {},
                "form_key": None,
            }
        node = dict(node)
        node["parameters"] = {}
        if "content" in node:
            node["content"] = walk(node["content"])
        return node

    return ak.forms.from_dict(walk(data))


def _contract_out_dtype(scorer: OnnxScorer, name: str) -> np.dtype:
    """dtype of output ``name`` as the ONNX file declares it (float32 if it does not)."""
    st = scorer.model_path.stat()
    sig = _graph_signature(str(scorer.model_path), st.st_size, st.st_mtime_ns)
    return sig["outputs"].get(name, (None, []))[0] or np.dtype("float32")


def _output_dtype(session: Any, name: str) -> np.dtype:
    for o in session.get_outputs():
        if o.name == name:
            return _ORT_DTYPES.get(o.type, np.dtype("float32"))
    return np.dtype("float32")


# ----------------------------------------------------------------------------- model checks
def _check_model_file(path: Path) -> None:
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
    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output),
            "opset": opset}


def graph_signature(model_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Inputs, outputs and opset of an ONNX file, read with ``onnx`` (no session created).

    Args:
        model_path: the ``.onnx`` file.

    Returns:
        ``{"inputs": {name: (dtype, dims)}, "outputs": {...}, "opset": int}``; ``dims``
        holds ints for fixed axes and the symbolic name (or ``None``) for dynamic ones.

    Raises:
        ModelFileError: missing, empty, truncated or invalid file.
    """
    path = Path(model_path).resolve()
    _check_model_file(path)
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


def _check_graph_against_contract(path: Path, contract: ModelContract) -> dict[str, Any]:
    st = path.stat()
    sig = _graph_signature(str(path), st.st_size, st.st_mtime_ns)
    _compare_io(contract, sig["inputs"], sig["outputs"], "ONNX graph")
    if sig["opset"] is not None and contract.opset and sig["opset"] != contract.opset:
        raise ModelContractError(
            f"model {contract.name!r}: contract says opset {contract.opset}, the ONNX file "
            f"{path.name} declares opset {sig['opset']}"
        )
    return sig


def _check_session_against_contract(session: Any, contract: ModelContract, path: Path) -> None:
    def describe(values: Any) -> dict[str, tuple[np.dtype | None, list[Any]]]:
        return {v.name: (_ORT_DTYPES.get(v.type), list(v.shape)) for v in values}

    _compare_io(
        contract, describe(session.get_inputs()), describe(session.get_outputs()),
        f"ONNX Runtime session of {path.name}",
    )


_OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def _create_session(
    path: Path,
    *,
    providers: list[str],
    intra_op_threads: int | None,
    graph_optimization: GraphOptimization,
) -> Any:
    ort = require("onnxruntime", purpose="ONNX model scoring")
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, _OPT_LEVELS[graph_optimization]
    )
    if intra_op_threads is not None:
        options.intra_op_num_threads = int(intra_op_threads)
    options.log_severity_level = 3  # errors only: provider-assignment notes flood worker logs
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as err:  # onnxruntime raises its own pybind classes (InvalidProtobuf, Fail)
        raise ModelFileError(
            f"ONNX Runtime could not load {path} with providers {providers}: "
            f"{type(err).__name__}: {err}"
        ) from err


# ----------------------------------------------------------------------------- one-liner
_SCORERS: dict[tuple[Any, ...], OnnxScorer] = {}


def add_scores(
    events: Any,
    model_path: str | os.PathLike[str],
    *,
    name: str | None = None,
    **scorer_kwargs: Any,
) -> Any:
    """Add a model's score to NanoEvents: the one-liner for any coffea processor.

    ``events = add_scores(events, "models/svj_ae.onnx")`` adds ``events.FatJet.svj_ae``
    (jet-level contract, collection ``contract.jets``) or ``events.svj_ae`` (event level).
    Scorers are cached per model and options in this process, so calling it once per chunk
    costs one contract read and one session per process.

    Args:
        events: NanoEvents (eager, virtual or dask).
        model_path: the ``.onnx`` file (sidecar contract next to it).
        name: field name; defaults to the contract's ``name``.
        **scorer_kwargs: passed to :class:`OnnxScorer`.

    Returns:
        ``events`` with the score field added.
    """
    path = Path(model_path).resolve()
    # mtime in the key: a model rewritten in place (re-export) is re-read with its contract
    mtime = path.stat().st_mtime_ns if path.is_file() else None
    key = (str(path), mtime, tuple(sorted(scorer_kwargs.items(), key=str)))
    scorer = _SCORERS.get(key)
    if scorer is None:
        scorer = _SCORERS[key] = OnnxScorer(model_path, **scorer_kwargs)
    name = name or scorer.contract.name
    scores = scorer.score_events(events)
    if scorer.contract.level == "jet":
        events[scorer.contract.jets, name] = scores
    else:
        events[name] = scores
    return events
