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

import hashlib
import os
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import awkward as ak
import numpy as np

from coffea_ad._optional import require
from coffea_ad.errors import (
    InvalidArgumentError,
    MissingBranchError,
    MissingDependencyError,
    ModelContractError,
    NonFiniteInputError,
    NonFiniteScoreError,
)
from coffea_ad.inference import session as _session
from coffea_ad.inference._layout import (
    ListTemplate,
    as_input_mapping,
    awkward_to_numpy,
    derive_graph,
    derive_mask,
    graft,
    is_dask_awkward,
    is_mask_spec,
    is_prepadded,
    list_depth,
    replace_leaf_form,
)
from coffea_ad.inference.checks import (
    check_graph_against_contract,
    check_session_against_contract,
    graph_signature,
    session_output_dtype,
)
from coffea_ad.inference.contract import InputSpec, ModelContract, sidecar_path
from coffea_ad.inference.session import GraphOptimization, session_creations

__all__ = [
    "BATCH_BYTES",
    "DERIVED_BYTES",
    "FLAG_VALUE",
    "NONFINITE_MASK",
    "NonFinitePolicy",
    "OnnxScorer",
    "ScorerStats",
    "add_scores",
    "auto_batch_size",
]


NonFinitePolicy = Literal["raise", "flag"]

#: Sentinel written into every output of a row whose inputs hold NaN/inf under
#: ``nonfinite="flag"``. Negative, so it never passes an anomaly cut ``score > c`` of a
#: reconstruction-loss score (losses are >= 0) and lands in the underflow of a score axis
#: starting at 0; the boolean :data:`NONFINITE_MASK` output says which rows carry it.
FLAG_VALUE: float = -1.0

#: Key of the boolean "inputs were not finite" output of :meth:`OnnxScorer.outputs` under
#: ``nonfinite="flag"``.
NONFINITE_MASK = "nonfinite"


#: Input bytes per ``session.run`` call of the default batch size. One call over a whole
#: chunk streams every intermediate array of the model through main memory (100k jets x 10
#: float32 = 4 MB per layer); batches of ~256 kB of input keep them in L2/L3 and cost one
#: ~10 us call each. Measured with ``benchmarks/bench_inference.py`` (batch-size scans).
BATCH_BYTES: int = 256 * 1024

#: Bytes of the model's largest intermediate tensor per ``session.run`` call of the default
#: batch size. A graph model that builds its pairwise tensors inside the graph ([batch, 50,
#: 50] float32: 10 kB per jet) streams a dozen elementwise ops over them: on this project's
#: 2 MB-L2 cores such a graph AE ran 15.4 ms per 1000 jets at 32-64 jets per call against
#: 17.6 at 128 and 17.1 at 8 (per-call cost). The dense MLPs' layers (40 B per jet) leave
#: their input rule's batch unchanged.
INTERMEDIATE_BYTES: int = 512 * 1024

#: Bytes of a derived input (a graph's adjacency, made on the host batch by batch) per call.
#: It is written once by a compiled pass and read by the model's matrix products, not
#: streamed through elementwise ops, so it gets a budget of about one L2 of its own: the
#: SVJ chain with svj_gae (its 10 kB adjacency per jet) ran 0.56 s per 20k events at 32
#: jets per call and 0.44 s at 128 (0.42 at 256, 0.48 at 512), ``benchmarks/bench_chain.py``.
DERIVED_BYTES: int = 2 * 1024 * 1024


#: The default batch on a GPU provider (CUDA, TensorRT). Each ``session.run`` call there
#: costs a kernel launch per node and a host<->device copy, so the CPU's cache-sized batches
#: starve it: on an H200 with ONNX Runtime 1.31's CUDA provider (``benchmarks/bench_gpu.py``)
#: the dense AE ran 18.6 M jets/s at 8192 rows per call and 52.7 M at 1 M rows (one CPU
#: thread: 4.7 M), svj_gae 0.07 M jets/s at 32 jets per call (half of one CPU thread) and
#: 0.29 M at 1024, the particle VAE 0.03 M at 16 and 1.2 M at 8192. The GPU batch feeds
#: about this much input per call ...
GPU_BATCH_BYTES: int = 64 * 1024 * 1024
#: ... holds the largest intermediate tensor within this much device memory ...
GPU_INTERMEDIATE_BYTES: int = 256 * 1024 * 1024
#: ... and a derived input, which the host computes batch by batch (a graph's adjacency),
#: within this much host memory per batch.
GPU_DERIVED_BYTES: int = 32 * 1024 * 1024
#: Providers that run on an accelerator and get the GPU batch.
GPU_PROVIDERS: frozenset[str] = frozenset({
    "CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider",
    "MIGraphXExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider"})


def auto_batch_size(contract: ModelContract, row_bytes: int | None = None, *,
                    gpu: bool = False) -> int:
    """Rows per ``session.run`` call.

    On the CPU (default): rows that feed about :data:`BATCH_BYTES` of input, keep the
    largest intermediate tensor (``row_bytes`` per row, from
    :func:`~coffea_ad.inference.checks.graph_signature`; None: unknown) within about
    :data:`INTERMEDIATE_BYTES` and a host-derived input within :data:`DERIVED_BYTES`: a
    power of two between 16 and 65536 (8192 for 6 float32 features, 128 for the graph AE on
    50 constituents).

    With ``gpu=True`` (a CUDA or TensorRT session): rows that feed about
    :data:`GPU_BATCH_BYTES`, hold the largest intermediate within
    :data:`GPU_INTERMEDIATE_BYTES` and a host-derived input within :data:`GPU_DERIVED_BYTES`:
    a power of two between 16 and 2**21 (2**21 for 6 float32 features, 2048 for the graph
    AE)."""
    input_bytes = sum(int(np.prod(spec.shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize
                      for spec in contract.inputs if spec.graph is None)
    derived = max((int(np.prod(spec.shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize
                   for spec in contract.inputs if spec.graph is not None), default=0)
    if gpu:
        # a derived input is made per batch on the host and lives on the device too
        row_bytes = max(row_bytes or 0, derived)
        rows = GPU_BATCH_BYTES // max(input_bytes, 1)
        if row_bytes:
            rows = min(rows, GPU_INTERMEDIATE_BYTES // row_bytes)
        if derived:
            rows = min(rows, GPU_DERIVED_BYTES // derived)
        top = 1 << 21
    else:
        rows = BATCH_BYTES // max(input_bytes, 1)
        if row_bytes:
            rows = min(rows, INTERMEDIATE_BYTES // row_bytes)
        if derived:
            rows = min(rows, DERIVED_BYTES // derived)
        top = 65536
    return int(min(max(1 << max(int(rows).bit_length() - 1, 0), 16), top))


@dataclass(frozen=True)
class ScorerStats:
    """Counters of one scorer instance (in dask mode they live on the workers' copies).

    Attributes:
        calls: scoring calls that ran the model (typetracer calls excluded).
        rows: rows (jets or events) scored.
        batches: ``session.run`` calls.
        nonfinite_rows: rows whose inputs held NaN/inf and got :data:`FLAG_VALUE`.
        nonfinite_scores: rows with finite inputs whose outputs held NaN/inf (``"flag"``:
            they got :data:`FLAG_VALUE` too).
        session_creations: sessions created by any scorer in this process.
    """

    calls: int = 0
    rows: int = 0
    batches: int = 0
    nonfinite_rows: int = 0
    nonfinite_scores: int = 0
    session_creations: int = 0


class OnnxScorer:
    """Score events or jets with an ONNX model described by its sidecar contract.

    Args:
        model_path: the ``.onnx`` file; its contract is read from the ``.json`` next to it.
        providers: execution providers in order of preference (names or aliases such as
            ``"cuda"``); ``None`` prefers TensorRT, then CUDA, then CPU, among those this
            ``onnxruntime`` build offers (see :func:`~coffea_ad.inference.providers.select_providers`).
        batch_size: rows per ``session.run`` call; ``None`` (default): on the CPU, as many
            rows as feed about :data:`BATCH_BYTES` of input and hold the model's largest
            intermediate tensor within about :data:`INTERMEDIATE_BYTES` and a derived input
            within :data:`DERIVED_BYTES` (a power of two, 16 to 65536), so that one batch's
            arrays stay in the CPU caches (8192 rows for 6 float32 features, 128 jets for
            the graph AE on 50 constituents); when
            the session runs on a GPU provider, :attr:`gpu_batch_size` (see
            :func:`auto_batch_size`: 2**21 rows for 6 features, 2048 jets for the graph AE).
        intra_op_threads: ONNX Runtime intra-op threads; ``None`` lets ONNX Runtime decide
            (all cores), set 1 on batch workers that run one task per core.
        graph_optimization: ONNX Runtime graph optimization level. On the CPU provider,
            every level but ``"disable"`` also runs float32 ``Elu`` nodes as vectorized
            ``Exp``/``Min``/``Max`` and per-feature ``Sub``/``Div``/``Mul``/``Add`` chains
            (an in-graph standardization) as one ``Gemm``
            (:func:`coffea_ad.inference.rewrite.rewrite_for_cpu`, in memory: 1.5x and then
            1.3x faster for the shipped dense AEs, scores within ~1e-6 relative);
            ``"disable"`` runs the model exactly as written.
        nonfinite: ``"raise"``: NaN/inf in an input raises :class:`NonFiniteInputError`
            naming the features and counts before any row is scored, NaN/inf in an output
            raises :class:`NonFiniteScoreError`; ``"flag"``: such rows get
            :data:`FLAG_VALUE` in every output, are counted in :attr:`stats`
            (``nonfinite_rows``, ``nonfinite_scores``), and :meth:`outputs` adds the boolean
            mask :data:`NONFINITE_MASK`.
        puppi: when features are computed from events (:meth:`score_events`), constituents
            are PUPPI-weighted if the file carries ``PFCands_puppiWeight`` (CMS AK8 jets are
            PUPPI jets); ``False`` uses the raw candidates.
        jets: jet collection to read for a jet-level model (default: the contract's
            ``jets``); another collection must be one the contract's ``sources`` lists (e.g.
            ``"JetsAK8"`` for TreeMaker), whose feature sources are then used.

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
        batch_size: int | None = None,
        intra_op_threads: int | None = None,
        graph_optimization: GraphOptimization = "all",
        nonfinite: NonFinitePolicy = "raise",
        puppi: bool = True,
        jets: str | None = None,
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be >= 1, found {batch_size}")
        if graph_optimization not in ("disable", "basic", "extended", "all"):
            raise InvalidArgumentError(
                "graph_optimization must be one of 'disable', 'basic', 'extended', 'all', "
                f"found {graph_optimization!r}"
            )
        if nonfinite not in ("raise", "flag"):
            raise InvalidArgumentError(f"nonfinite must be 'raise' or 'flag', found {nonfinite!r}")
        self.model_path = Path(model_path).resolve()
        self.providers = None if providers is None else tuple(providers)
        self.intra_op_threads = intra_op_threads
        self.graph_optimization: GraphOptimization = graph_optimization
        self.nonfinite: NonFinitePolicy = nonfinite
        self.puppi = bool(puppi)
        signature = graph_signature(self.model_path)  # a missing/corrupt file comes first
        self.contract = ModelContract.read(sidecar_path(self.model_path))
        # Refuse a contract that disagrees with the graph now, on the client, before any
        # event is read; the session's own inputs are checked again where it is created.
        check_graph_against_contract(self.model_path, self.contract)
        # The model travels with the scorer: the bytes (and the contract) are pickled, the
        # session is rebuilt from them on each worker, so workers need no shared disk and
        # score exactly the model that was checked here, whatever happens to the file later.
        self._model_bytes = self.model_path.read_bytes()
        self.model_sha256 = hashlib.sha256(self._model_bytes).hexdigest()
        self._output_dtypes = {name: dt for name, (dt, _) in signature["outputs"].items()}
        self.jets = jets or self.contract.jets
        if jets is not None and jets != self.contract.jets and jets not in self.contract.sources:
            raise ModelContractError(
                f"model {self.contract.name!r} was made for jets {self.contract.jets!r}; its "
                f"contract declares feature sources for {sorted(self.contract.sources)}, not "
                f"for {jets!r}"
            )
        self._centre, self._inv_scale = {}, {}
        for spec in self.contract.inputs:
            if spec.scaling == "external":
                self._centre[spec.name] = np.asarray(spec.centre, dtype=spec.dtype)
                # multiply by 1/scale: one pass fewer than a division over [n, F]
                self._inv_scale[spec.name] = (1.0 / np.asarray(spec.scale, np.float64)).astype(
                    spec.dtype
                )
        # the provider is known once the session exists (on the worker): both defaults now
        self.batch_size = int(batch_size) if batch_size is not None else auto_batch_size(
            self.contract, signature.get("row_bytes"))
        self.gpu_batch_size = int(batch_size) if batch_size is not None else auto_batch_size(
            self.contract, signature.get("row_bytes"), gpu=True)
        self._session: Any = None
        self._generation = _session.generation()
        self._lock = threading.Lock()
        self._counts = {"calls": 0, "rows": 0, "batches": 0, "nonfinite_rows": 0,
                        "nonfinite_scores": 0}

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
        if self._session is None or self._generation != _session.generation():
            self._generation = _session.generation()
            self._session = _session.get_session(
                self.model_path,
                model_bytes=self._model_bytes,
                sha256=self.model_sha256,
                providers=self.providers,
                intra_op_threads=self.intra_op_threads,
                graph_optimization=self.graph_optimization,
                check=self._check_session,
            )
        return self._session

    def _check_session(self, session: Any) -> None:
        check_session_against_contract(session, self.contract, self.model_path)

    @property
    def provider(self) -> str:
        """The execution provider that runs the model (the first of ``session.get_providers()``)."""
        return self.session.get_providers()[0]

    @property
    def stats(self) -> ScorerStats:
        """Counters of this instance plus the process-wide session-creation count."""
        return ScorerStats(**self._counts, session_creations=session_creations())

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
        ``coffea_ad.features.particle_list_from_events`` (``particle_list`` of the jets'
        constituents);
        event-level contracts from the event fields named like the features, else from
        ``coffea_ad.features.event_variables`` (SVJ/dijet: ``mjj, mt, met, dphi_min, ...``)
        or ``coffea_ad.features.vbs_variables`` (``lep1_pt, zep1, mll, ...``).

        Args:
            events: NanoEvents (eager, virtual or dask).

        Returns:
            ``events * jets * float32`` (jet level) or ``events * float32`` (event level).
        """
        return self._events_dispatch(events, only=self.contract.score)

    def outputs_from_events(self, events: Any) -> dict[str, Any]:
        """Every output for NanoEvents, by the same feature path as :meth:`score_events`
        (plus :data:`NONFINITE_MASK` under ``nonfinite="flag"``)."""
        return self._events_dispatch(events, only=None)

    def score_jets(self, events: Any, jet_index: Any) -> np.ndarray:
        """Scores of just the jets at ``jet_index`` of eager events: what an analysis that
        histograms a few jets per event needs from an expensive model. The inputs come by
        the same path as :meth:`score_events` (so the scores are those of
        ``ak.flatten(score_events(events))[jet_index]``), computed for these jets only where
        the path allows (padded constituent lists); dense features are computed per event
        and taken.

        Args:
            events: eager (or virtual) NanoEvents, not typetracers or dask-awkward.
            jet_index: positions in the flattened jet collection (any order, repeats
                allowed).

        Returns:
            numpy ``[len(jet_index)]``.
        """
        return self._jets_dispatch(events, jet_index, only=self.contract.score)

    def outputs_for_jets(self, events: Any, jet_index: Any) -> dict[str, np.ndarray]:
        """Every output for the jets at ``jet_index`` (see :meth:`score_jets`), plus
        :data:`NONFINITE_MASK` under ``nonfinite="flag"``."""
        return self._jets_dispatch(events, jet_index, only=None)

    def _jets_dispatch(self, events: Any, jet_index: Any, *, only: str | None) -> Any:
        if self.contract.level != "jet":
            raise ModelContractError(f"model {self.contract.name!r} is {self.contract.level!r}"
                                     "-level: score_jets scores jets")
        if is_dask_awkward(events) or ak.backend(events) != "cpu":
            raise InvalidArgumentError("score_jets takes eager events; on dask-awkward or "
                                       "typetracer events use score_events")
        index = np.asarray(jet_index)
        if index.size == 0:
            index = index.astype(np.int64)  # np.asarray([]) is float64
        if self._particle_specs():
            outs = self._run_blocks(self._particle_blocks(events, jet_index=index), only=only)
            return outs[only] if only is not None else outs
        table = ak.flatten(self.features_from_events(events), axis=1)[index]
        result = self._dispatch(table, only=only)
        if only is not None:
            return ak.to_numpy(result)
        return {k: ak.to_numpy(v) for k, v in result.items()}

    def _events_dispatch(self, events: Any, *, only: str | None) -> Any:
        if self._particle_specs():
            return self._score_particle_events(events, only=only)
        return self._dispatch(self.features_from_events(events), only=only)

    def _particle_specs(self) -> list[InputSpec]:
        return [s for s in self.contract.inputs
                if s.pad_length is not None and not is_mask_spec(s) and s.graph is None]

    def _particle_spec(self) -> InputSpec:
        """The one padded particle input of a constituent-level jet contract."""
        if self.contract.level != "jet" or len(self._particle_specs()) != 1:
            raise ModelContractError(
                f"model {self.contract.name!r}: score_events builds one padded particle input "
                f"per jet; this contract has inputs {self.contract.input_names} at level "
                f"{self.contract.level!r}. Compute the inputs and call the scorer on them"
            )
        return self._particle_specs()[0]

    def _particle_feeds(self, events: Any) -> dict[str, Any]:
        """The padded particle input (and its mask inputs) of every jet of dask-awkward or
        typetracer events (the grouped path, mapped over partitions)."""
        from coffea_ad.features import particle_list_from_events

        spec = self._particle_spec()
        values, mask = particle_list_from_events(
            events, jets=self.jets or "FatJet", puppi=self.puppi, n=spec.pad_length,
            features=spec.features, pad_value=spec.pad_value,
        )
        return self._with_masks(spec, values, mask)

    def _with_masks(self, spec: InputSpec, values: Any, mask: Any) -> dict[str, Any]:
        feeds: dict[str, Any] = {spec.name: values}
        for other in self.contract.inputs:
            if other is not spec and other.graph is None:
                feeds[other.name] = mask  # is_mask_spec: the padding mask of the same length
        return feeds

    def _particle_blocks(self, events: Any, *, jet_index: np.ndarray | None = None) -> Any:
        """The particle lists of every jet of eager events, or of ``jet_index``, straight from
        the flat link table (no grouped constituent records: the same bits as
        ``particle_list(jet_constituents(...))``), to be written batch by batch."""
        from coffea_ad.features import particle_blocks_from_events

        spec = self._particle_spec()
        return particle_blocks_from_events(
            events, jets=self.jets or "FatJet", puppi=self.puppi, n=spec.pad_length,
            features=spec.features, pad_value=spec.pad_value, jet_index=jet_index,
        )

    def _score_particle_events(self, events: Any, *, only: str | None) -> Any:
        """Constituent-level contracts: padded particle lists of every jet, scored per jet."""
        jets = events[self.jets or "FatJet"]
        if not is_dask_awkward(events) and ak.backend(events) == "cpu":
            outs = self._run_blocks(self._particle_blocks(events), only=only)
            counts = ak.to_numpy(ak.num(jets, axis=1))
            offsets = np.zeros(len(counts) + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            template = ListTemplate([("offsets", offsets)], int(offsets[-1]))
            if only is not None:
                return template.wrap(outs[only])
            return {k: template.wrap(v) for k, v in outs.items()}
        feeds = self._particle_feeds(events)
        if any(is_dask_awkward(v) for v in feeds.values()):
            dak = require("dask_awkward", purpose="scoring dask-awkward arrays")
            flat = self._call_dask(feeds, only=only)
            with warnings.catch_warnings():
                # particle_list keeps the events' partitions (one row per jet, in order), so
                # counts and scores are partition-compatible; dask-awkward cannot know it
                warnings.filterwarnings("ignore", message="Please ensure that",
                                        category=UserWarning)
                counts = dak.num(jets, axis=1)
                if only is not None:
                    return dak.unflatten(flat, counts)
                return {k: dak.unflatten(v, counts) for k, v in flat.items()}
        if any(ak.backend(v) == "typetracer" for v in feeds.values()
               if isinstance(v, ak.Array)):
            # a function mapped over dask-awkward partitions, in its projection pass: the
            # inputs' columns are touched, the outputs typed, nothing is run
            flat = self._typetracer_outputs(feeds, only=only)
            counts = ak.num(jets, axis=1)
            if only is not None:
                return ak.unflatten(flat, counts)
            return {k: ak.unflatten(v, counts) for k, v in flat.items()}
        raise InvalidArgumentError(f"score_events takes eager, virtual or dask-awkward "
                                   f"events; found the {ak.backend(events)!r} backend")

    def features_from_events(self, events: Any) -> Any:
        """The record array of contract features for ``events`` (see :meth:`score_events`)."""
        if self.contract.level == "jet":
            try:
                from coffea_ad.features import jet_features
            except ImportError as err:
                raise MissingDependencyError(
                    "OnnxScorer.score_events needs coffea_ad.features.jet_features, "
                    f"which cannot be imported: {err}"
                ) from err
            return jet_features(events, self.contract.features, jets=self.jets,
                                puppi=self.puppi, sources=self.contract.sources.get(self.jets))
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
        if is_dask_awkward(x) or (
            isinstance(x, Mapping) and any(is_dask_awkward(v) for v in x.values())
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
        outs = self._run_numpy(arrays, only=only)
        return outs[only] if only is not None else outs

    # ------------------------------------------------------------------ numpy core
    def _run_numpy(
        self, arrays: dict[str, np.ndarray], *, owned: bool = False, only: str | None = None
    ) -> dict[str, np.ndarray]:
        """Check, scale, batch and run ``{input_name: [n, *shape]}``; return every output, or
        only the output ``only``.

        ``owned``: the arrays are scratch of this scorer and may be modified in place (the
        awkward path); otherwise the caller's arrays are never written to. ``only``: ONNX
        Runtime is asked for that output alone, so the others (a graph AE's reconstruction
        is 350 floats per jet) are neither copied out nor checked for NaN.
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
        outs = self._run_batches(feeds, n, [only] if only is not None else None)
        return self._finish(outs, n, bad)

    def _run_blocks(self, blocks: Any, *, only: str | None = None) -> dict[str, np.ndarray]:
        """:meth:`_run_numpy` of the feeds of :meth:`_particle_blocks`, written a batch at a
        time into one reused buffer: each batch is filled, checked, scaled and scored while
        it is in the CPU cache, and no ``[n_jets, n, F]`` array of the chunk is made (55 MB
        for a 20k-event chunk of the SVJ chain: written and read once from main memory, and
        its fresh pages faulted in on every chunk; on this project's 2-core machine the
        first write of that array took 2.7x the time of writing it again). Same results,
        bit for bit.

        Contracts this does not cover (a mask input of another dtype than the others, a
        scaled mask, a non-float32 particle input) and inputs with NaN/inf under
        ``nonfinite="raise"`` (so that the error counts the whole chunk) take the arrays."""
        spec = self._particle_spec()
        feeds_of = self._with_masks  # (spec, values, mask) -> feeds
        masks = [s for s in self.contract.inputs
                 if s is not spec and s.graph is None]
        mask_dtypes = {np.dtype(s.dtype) for s in masks}
        n = blocks.n_jets

        def whole() -> dict[str, np.ndarray]:
            return self._run_numpy(feeds_of(spec, *blocks.arrays()), owned=True, only=only)

        if (n == 0 or np.dtype(spec.dtype) != np.float32 or len(mask_dtypes) > 1
                or any(s.name in self._centre for s in masks)):
            return whole()
        mask_dtype = mask_dtypes.pop() if mask_dtypes else np.dtype(bool)
        size = min(self._batch_size(), n)
        values = np.empty((size, blocks.n, blocks.n_features), dtype=np.float32)
        mask = np.empty((size, blocks.n), dtype=mask_dtype)
        centre, inv_scale = self._centre.get(spec.name), self._inv_scale.get(spec.name)
        bad = np.zeros(n, dtype=bool)

        def batch(start: int, stop: int) -> dict[str, np.ndarray]:
            v, m = values[:stop - start], mask[:stop - start]
            blocks.fill(start, stop, v, m)
            feeds = feeds_of(spec, v, m)
            rows = self._nonfinite_rows(feeds, stop - start)  # raises under "raise"
            if centre is not None:
                v -= centre
                v *= inv_scale
            if rows is not None:  # the model never sees NaN/inf: flagged rows are fed zeros
                v[rows] = 0
                m[rows] = 0
                bad[start:stop] = rows
            return feeds

        try:
            outs = self._run_batched(n, [only] if only is not None else None, batch)
        except NonFiniteInputError:
            return whole()  # the same error, counted over every jet of the chunk
        return self._finish(outs, n, bad if bad.any() else None)

    def _finish(self, outs: dict[str, np.ndarray], n: int,
                bad: np.ndarray | None) -> dict[str, np.ndarray]:
        """Check the outputs of ``n`` rows (``bad``: rows flagged for their inputs), flag or
        raise, and count the call."""
        bad_out = self._nonfinite_outputs(outs, n, flagged=bad)
        if self.nonfinite == "flag":
            mask = np.zeros(n, dtype=bool) if bad is None else bad.copy()
            if bad_out is not None:
                mask |= bad_out
            if mask.any():
                for out in outs.values():
                    if np.issubdtype(out.dtype, np.floating):
                        out[mask] = FLAG_VALUE
            outs[NONFINITE_MASK] = mask
        with self._lock:
            self._counts["calls"] += 1
            self._counts["rows"] += n
            self._counts["nonfinite_rows"] += 0 if bad is None else int(bad.sum())
            self._counts["nonfinite_scores"] += 0 if bad_out is None else int(bad_out.sum())
        return outs

    def _nonfinite_outputs(self, outs: dict[str, np.ndarray], n: int, *,
                           flagged: np.ndarray | None) -> np.ndarray | None:
        """Boolean [n] of rows (finite inputs) whose model outputs hold NaN/inf, or None.

        A NaN score compares false with every threshold, so it would silently count as "not
        anomalous" and land in no bin: under ``"raise"`` it is an error naming the outputs,
        under ``"flag"`` the row gets :data:`FLAG_VALUE`, the mask, and is counted.
        """
        if n == 0:
            return None
        bad = None
        per_output: list[str] = []
        for name, out in outs.items():
            if not np.issubdtype(out.dtype, np.floating):
                continue
            rows = ~np.isfinite(out.reshape(n, -1)).all(axis=1)
            if flagged is not None:
                rows &= ~flagged  # already flagged for their inputs, counted there
            if rows.any():
                bad = rows if bad is None else bad | rows
                per_output.append(f"{name!r}: {int(rows.sum())}")
        if bad is not None and self.nonfinite == "raise":
            raise NonFiniteScoreError(
                f"model {self.contract.name!r} ({self.model_path}): {int(bad.sum())} of {n} "
                f"rows with finite inputs give NaN/inf outputs (rows per output: "
                f"{', '.join(per_output)}); expected finite scores. Fix the model, or score "
                "with nonfinite='flag' (--nonfinite flag) to give them -1 and count them"
            )
        return bad

    def _batch_size(self) -> int:
        """Rows per ``session.run`` call on this scorer's provider."""
        gpu = self.session.get_providers()[0] in GPU_PROVIDERS
        return self.gpu_batch_size if gpu else self.batch_size

    def _run_batches(self, feeds: dict[str, np.ndarray], n: int,
                     names: list[str] | None = None) -> dict[str, np.ndarray]:
        return self._run_batched(n, names, lambda start, stop: {k: v[start:stop]
                                                                for k, v in feeds.items()})

    def _run_batched(self, n: int, names: list[str] | None,
                     inputs: Callable[[int, int], dict[str, np.ndarray]],
                     ) -> dict[str, np.ndarray]:
        """Run the session over rows ``0:n`` in batches of :meth:`_batch_size`:
        ``inputs(start, stop)`` gives a batch's given inputs, the derived ones (a graph's
        adjacency) are made here; every output (or ``names``), ``[n, ...]``."""
        session = self.session
        names = list(self.contract.output_names) if names is None else names
        if n == 0:
            return {o.name: np.zeros((0, *o.shape), dtype=session_output_dtype(session, o.name))
                    for o in self.contract.outputs if o.name in names}
        derived = [spec for spec in self.contract.inputs if spec.graph is not None]
        scratch: dict[str, np.ndarray] = {}
        batch_size = self._batch_size()

        def batch_feeds(start: int, stop: int) -> dict[str, np.ndarray]:
            batch = inputs(start, stop)
            for spec in derived:  # computed per batch: stays in cache, no [n, 50, 50] chunk
                if spec.name not in scratch:
                    scratch[spec.name] = np.empty((min(batch_size, n), *spec.shape),
                                                  dtype=np.float32)
                batch[spec.name] = derive_graph(spec, batch, self.contract,
                                                out=scratch[spec.name][:stop - start])
            return batch

        if n <= batch_size:
            results = session.run(names, batch_feeds(0, n))
            with self._lock:
                self._counts["batches"] += 1
            return dict(zip(names, results, strict=True))
        outs: dict[str, np.ndarray] = {}
        nbatches = 0
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            results = session.run(names, batch_feeds(start, stop))
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
        # derived inputs (a graph AE's adjacency) are computed per batch from the others
        expected = [spec.name for spec in self.contract.inputs if spec.graph is None]
        if sorted(arrays) != sorted(expected):
            raise ModelContractError(
                f"model {self.contract.name!r} expects inputs {expected}, given "
                f"{sorted(arrays)}: missing {[e for e in expected if e not in arrays]}, "
                f"unexpected {[g for g in arrays if g not in expected]}"
            )
        feeds: dict[str, np.ndarray] = {}
        n = None
        for spec in self.contract.inputs:
            if spec.graph is not None:
                continue
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
            if spec.graph is not None:  # derived per batch from the inputs checked here
                continue
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
        given = as_input_mapping(x, self.contract)
        template = None
        if ak.backend(*given.values()) == "typetracer":
            return self._typetracer_outputs(given, only=only)
        arrays: dict[str, np.ndarray] = {}
        for spec in specs:
            if spec.graph is not None or (spec.name not in given and is_mask_spec(spec)):
                continue  # derived below (the mask) or per batch (a graph)
            arr, tmpl = awkward_to_numpy(given[spec.name], spec, self.contract)
            arrays[spec.name] = arr
            template = tmpl if template is None else template
        for spec in specs:
            if spec.name not in arrays and spec.graph is None:
                arrays[spec.name] = derive_mask(given, spec, self.contract)
        outs = self._run_numpy(arrays, owned=True, only=only)
        wanted = [only] if only is not None else list(outs)
        result = {k: graft(template, outs[k]) for k in wanted}
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
            if not arr.fields and is_prepadded(arr, spec):
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
        # dtypes read on the client at construction: workers may not see the model file
        out_specs = {o.name: (o.shape, self._output_dtypes.get(o.name) or np.dtype("float32"))
                     for o in self.contract.outputs}
        if self.nonfinite == "flag":
            out_specs[NONFINITE_MASK] = ([], np.dtype(bool))
        wanted = [only] if only is not None else list(out_specs)
        result = {}
        for k in wanted:
            shape, dtype = out_specs[k]
            form = replace_leaf_form(template.layout.form, dtype, shape)
            result[k] = ak.Array(
                form.length_zero_array().to_typetracer(forget_length=True)
            )
        return result[only] if only is not None else result

    # ------------------------------------------------------------------ dask-awkward
    def _call_dask(self, x: Any, *, only: str | None) -> Any:
        dak = require("dask_awkward", purpose="scoring dask-awkward arrays")
        given = as_input_mapping(x, self.contract)
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
            meta_out = ak.zip(meta_out, depth_limit=list_depth(next(iter(meta_out.values()))))
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
            return ak.zip(out, depth_limit=list_depth(next(iter(out.values()))))
        return out


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
        events[scorer.jets, name] = scores
    else:
        events[name] = scores
    return events
