"""Helpers the processors share: input checks, event weights, MET, leading-jet pairs.

Kept private to ``coffea_ad.processors``: every physics quantity comes from
:mod:`coffea_ad.features`; these check inputs, fill histograms from the processors' columns and
shape the bookkeeping (per chunk, or as dask-awkward reductions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import numpy as np

from coffea_ad.analysis import is_lazy
from coffea_ad.errors import InvalidArgumentError, MissingBranchError, MissingMetadataError

__all__ = [
    "MET_NAMES",
    "chunk_output",
    "eager_columns",
    "event_rows",
    "fill_histograms",
    "finish_output",
    "lazy_bookkeeping",
    "lazy_twin",
    "leading_pair",
    "leading_pair_index",
    "lumi_scale",
    "merge_dataset_histograms",
    "met_collection",
    "per_event",
    "raw_weights",
    "register_dataset",
    "require_fields",
    "scores_flagged",
    "stack_datasets",
]

#: MET collections in order of preference (NanoAOD v15 renamed MET to PFMET).
MET_NAMES: tuple[str, ...] = ("MET", "PFMET", "PuppiMET")


def require_fields(
    events: Any,
    needs: Mapping[str, Sequence[str]],
    *,
    processor: str,
) -> None:
    """Raise :class:`MissingBranchError` unless every collection and field in ``needs`` exists.

    Checked on the first chunk of every file before anything is computed, so a file of the
    wrong layout (NanoAOD without PF candidates, a TreeMaker ntuple) is refused with the
    branch names the processor needs instead of an ``AttributeError`` deep in a kernel.

    Args:
        events: NanoEvents of one chunk.
        needs: collection -> fields it must carry (``{"FatJet": ["pt", "eta"]}``); a key with
            alternatives separated by ``|`` (``"MET|PFMET"``) needs one of them.
        processor: processor name for the message.
    """
    fields = list(events.fields)
    where = f"events of dataset {events.metadata.get('dataset', '?')!r}" if hasattr(
        events, "metadata") else "events"
    for collection, sub in needs.items():
        options = collection.split("|")
        present = [name for name in options if name in fields]
        if not present:
            raise MissingBranchError(" or ".join(options), fields, where=where,
                                     needed_for=f"the {processor} processor")
        have = list(events[present[0]].fields)
        for field in sub:
            # TreeMaker (p_T, η, φ, E) vectors give the mass as a property, not a branch
            if field not in have and not (field == "mass" and hasattr(events[present[0]], field)):
                raise MissingBranchError(
                    f"{present[0]}_{field}", [f"{present[0]}_{f}" for f in have], where=where,
                    needed_for=f"the {processor} processor")


def met_collection(events: Any) -> Any:
    """The event's MET record (``MET``, else ``PFMET``, else ``PuppiMET``; TreeMaker's scalar
    ``MET`` and ``METPhi`` as a ``{pt, phi}`` record)."""
    if "METPhi" in events.fields and "MET" in events.fields and not events["MET"].fields:
        return ak.zip({"pt": events["MET"], "phi": events["METPhi"]})
    for name in MET_NAMES:
        if name in events.fields:
            return events[name]
    raise MissingBranchError(" or ".join(MET_NAMES), events.fields, where="events",
                             needed_for="MET")


def raw_weights(events: Any, *, like: Any) -> Any:
    """Generator weights (``genWeight``, 1 for data) as a float64 awkward column, pure awkward
    (runs on chunks, partitions and typetracers); the processors multiply them by
    :func:`lumi_scale` for yields.

    Args:
        like: any per-event array of ``events`` (shapes the ones of data without
            ``genWeight``).
    """
    if "genWeight" in events.fields:
        return ak.values_astype(events.genWeight, np.float64)
    return ak.values_astype(ak.ones_like(like), np.float64)


def lumi_scale(metadata: Mapping[str, Any], lumi_fb: float) -> float:
    """``xsec * 1000 * lumi_fb / sumw`` from the dataset metadata (``xsec`` in pb and ``sumw``
    as written by :func:`coffea_ad.samples.generate_fileset`): weights times it are yields.

    Raises:
        KeyError: the dataset metadata lacks ``xsec`` or ``sumw``.
    """
    if "xsec" not in metadata or "sumw" not in metadata:
        msg = (f"lumi_fb={lumi_fb} needs dataset metadata 'xsec' (pb) and 'sumw'; dataset "
               f"{metadata.get('dataset', '?')!r} has "
               f"{sorted(k for k in metadata if k != 'dataset')}")
        raise MissingMetadataError(msg)
    return float(metadata["xsec"]) * 1000.0 * float(lumi_fb) / float(metadata["sumw"])


def leading_pair(jets: Any, mask: Any) -> tuple[Any, Any]:
    """Events with at least two jets passing ``mask`` and those jets' leading two.

    Args:
        jets: ``events * jets`` records (p_T-ordered, as NanoAOD writes them).
        mask: ``events * jets * bool`` preselection.

    Returns:
        ``(has_pair, lead)``: ``events * bool`` mask and ``pairs * 2 * record`` of the
        selected events' two leading passing jets.
    """
    good = jets[mask]
    has_pair = ak.num(good, axis=1) >= 2
    return has_pair, good[has_pair][:, :2]


def leading_pair_index(counts: np.ndarray, good: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                        np.ndarray]:
    """:func:`leading_pair` as flat indices, for numpy selections (:func:`eager_columns`).

    Args:
        counts: ``[n_events]`` jets per event.
        good: ``[sum(counts)]`` bool preselection of the flattened jets (in event order,
            p_T-ordered within an event as NanoAOD writes them).

    Returns:
        ``(has_pair, first, second)``: ``[n_events]`` bool, events with at least two good
        jets; and for those events, in order, the flat indices of their first and second
        good jet.
    """
    n_events = len(counts)
    positions = np.flatnonzero(good)
    event_of_good = np.repeat(np.arange(n_events), counts)[positions]
    n_good = np.bincount(event_of_good, minlength=n_events)
    start = np.zeros(n_events, dtype=np.int64)
    np.cumsum(n_good[:-1], out=start[1:])
    has_pair = n_good >= 2
    first = start[has_pair]
    return has_pair, positions[first], positions[first + 1]


def eager_columns(select: Any, arrays: Mapping[str, Any], **options: Any) -> Any:
    """``select(arrays, **options)`` for a selection written with numpy on eager arrays, also
    on the typetracers of dask-awkward's column-projection pass.

    A selection of a few dozen array operations costs ~0.1-0.5 ms per awkward operation per
    chunk (broadcasting, option and record bookkeeping) and a few microseconds in numpy on the
    same flat buffers. On typetracers ``select`` runs on length-zero stand-ins of ``arrays``
    (which marks exactly those columns as read) and its awkward outputs come back as
    typetracers of the same types, so one selection serves every executor.

    ``select`` must give outputs whose types do not depend on the number of rows (numpy's
    ``bincount`` of no entries is int64 even with float weights: cast such results).

    Args:
        select: ``select(arrays, **options)`` -> awkward arrays (in dicts, lists, tuples).
        arrays: the eager (or typetracer) awkward arrays it reads, by name.
    """
    if any(ak.backend(a) == "typetracer" for a in arrays.values()):
        stand_ins = {name: ak.typetracer.length_zero_if_typetracer(a)
                     for name, a in arrays.items()}
        return _to_typetracer(select(stand_ins, **options))
    return select(arrays, **options)


def event_rows(columns: Mapping[str, np.ndarray], counts: np.ndarray) -> ak.Array:
    """``events * var * record`` from flat numpy columns and the rows per event, built as
    layouts (``ak.zip`` + ``ak.unflatten`` broadcast and check what is known to fit here,
    ~0.5-1 ms per call on a chunk).

    Args:
        columns: field -> 1-d array, all of length ``counts.sum()``, rows in event order.
        counts: ``[n_events]`` rows of each event.
    """
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    n = int(offsets[-1])
    contents = []
    for name, values in columns.items():
        values = np.ascontiguousarray(values)
        if values.ndim != 1 or len(values) != n:
            msg = (f"event_rows: column {name!r} has shape {values.shape}, expected "
                   f"({n},) for {len(counts)} events")
            raise InvalidArgumentError(msg)
        contents.append(ak.contents.NumpyArray(values))
    record = ak.contents.RecordArray(contents, list(columns), length=n)
    return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), record))


def _to_typetracer(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_typetracer(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_typetracer(v) for v in obj)
    array = obj if isinstance(obj, ak.Array) else ak.Array(obj)
    return ak.Array(array.layout.to_typetracer(forget_length=True))


def per_event(values: Any, *masks: Any) -> Any:
    """Rows computed on nested subsets of the events, back at one list per event.

    ``values`` has one entry per event of the innermost subset; ``masks`` are the boolean
    masks that made the subsets, innermost first (each at the level of the next one, the
    last one per event). The result is ``events * var * values``: the entry of each selected
    event as a list of one, an empty list for the others, so that one record array holds
    columns of every selection depth (the shape :meth:`AnalysisProcessor.columns` returns).
    Pure awkward: runs on chunks, partitions and typetracers.
    """
    out = values
    for k, mask in enumerate(masks):
        out = ak.unflatten(out, ak.values_astype(mask, np.int64))
        if k:  # events * [0|1] * var * ...: merge the two list levels
            out = ak.flatten(out, axis=2)
    return out


def register_dataset(hists: Mapping[str, Any], dataset: str, **labels: str) -> None:
    """Make ``dataset`` (and the string ``labels``, e.g. ``systematic``) a bin of every
    histogram even when the chunk selected nothing.

    A growing category axis only gains a bin when something is filled into it, so an empty
    file would otherwise give histograms without its dataset. One fill with weight 0 adds
    the bins and nothing to any sum (``Weight`` storage holds sums of w and w² only).
    """
    import hist

    for h in hists.values():
        values: dict[str, Any] = {}
        for axis in h.axes:
            if axis.name == "dataset":
                values[axis.name] = dataset
            elif axis.name in labels:
                values[axis.name] = labels[axis.name]
            elif isinstance(axis, (hist.axis.StrCategory, hist.axis.IntCategory)):
                values[axis.name] = axis.value(0)
            else:
                values[axis.name] = axis.edges[0]
        h.fill(**values, weight=0.0)


def scores_flagged(scorer: Any, events: Any, *, features: Any = None) -> tuple[Any, Any]:
    """``scorer.score_events(events)`` (``scorer(features)`` when the features are given) and
    the number of rows flagged non-finite per event (``None`` unless ``nonfinite="flag"``).

    Under ``nonfinite="raise"`` (the default) a NaN/inf input or score raises, so nothing is
    flagged; under ``"flag"`` flagged rows carry -1 (below every anomaly cut) and are counted
    here, so a run reports how many jets/events its histograms hold as "not anomalous" for
    that reason instead of hiding them.
    """
    from coffea_ad.inference.scorer import NONFINITE_MASK

    if getattr(scorer, "nonfinite", "raise") != "flag":
        return (scorer.score_events(events) if features is None else scorer(features)), None
    outs = (scorer.outputs_from_events(events) if features is None
            else scorer.outputs(features))
    flagged = ak.Array(outs[NONFINITE_MASK])
    per_event = (ak.sum(flagged, axis=1) if flagged.ndim > 1
                 else ak.values_astype(flagged, np.int64))
    return outs[scorer.contract.score], per_event


def refuse_lazy_flag(scorer: Any) -> None:
    """The dask-awkward path cannot count flagged rows per chunk: refuse ``"flag"`` there."""
    if getattr(scorer, "nonfinite", "raise") == "flag":
        raise InvalidArgumentError(
            "nonfinite='flag' is counted on the Runner executors (iterative, futures, dask); "
            "on dask-awkward events use nonfinite='raise'")


def _fill_key(key: str) -> tuple[str, dict[str, str]]:
    """``"NAME|axis=label|..."`` -> ``("NAME", {axis: label})``."""
    name, *labels = key.split("|")
    return name, dict(label.split("=", 1) for label in labels)


def fill_histograms(hists: Mapping[str, Any], columns: Any, *, dataset: str,
                    systematic: str) -> None:
    """Fill ``hists`` from the per-event ``columns`` of :meth:`AnalysisProcessor.columns`,
    eager (``hist``, numpy) or lazy (``hist.dask``, dask-awkward) alike.

    Every column not starting with ``_`` is a fill: ``NAME`` or ``NAME|axis=label|...``,
    a list per event (nested lists allowed) of records with the axes and ``weight`` of
    histogram ``NAME``. The ``dataset`` axis gets ``dataset``, a ``systematic`` axis not set
    by the key gets ``systematic``.
    """
    lazy = is_lazy(columns)
    if lazy:
        import dask_awkward as flat_ops
    else:
        flat_ops = ak
    for key in columns.fields:
        if key.startswith("_"):
            continue
        name, labels = _fill_key(key)
        h = hists[name]
        rows = columns[key]
        while rows.ndim > 1:
            rows = flat_ops.flatten(rows, axis=1)
        values = {field: rows[field] for field in rows.fields}
        if not lazy:
            values = {field: ak.to_numpy(v) for field, v in values.items()}
        axes = [ax.name for ax in h.axes]
        fixed = {"dataset": dataset, **labels}
        if "systematic" in axes:
            fixed.setdefault("systematic", systematic)
        h.fill(**fixed, **values)


def chunk_output(
    hists: dict[str, Any], *, dataset: str, columns: Any, steps: Sequence[str],
    provider: str, systematic: str, count_nonfinite: bool = False,
) -> dict[str, Any]:
    """The accumulator every processor returns for one chunk: histograms (with ``dataset``
    registered even when nothing passed), the cutflow (``columns["_cutflow"]`` counted per
    step of ``steps``), the entries read, the raw sum of generator weights (whatever
    luminosity scaling the histograms carry) and the ONNX execution provider that scored the
    chunk.

    The histograms travel keyed by dataset (``hists_by_dataset``) and are stacked into one
    histogram per name by :func:`finish_output` (the processors' ``postprocess``): adding a
    chunk's histogram to the running sum of its own dataset is an element-wise sum, whereas
    adding it to a histogram that holds every dataset makes boost-histogram rebuild the
    whole (growing) category axis at each chunk. Measured on the svj ``abcd`` histogram
    (393k bins per dataset) with 8 datasets, that rebuild cost ~90 ms per chunk.
    """
    register_dataset(hists, dataset, systematic=systematic)
    n_all = len(columns)
    masks = columns["_cutflow"]
    _check_steps(masks.fields, steps)
    cutflow = {step: int(ak.sum(masks[f"c{k}"], axis=None)) for k, step in enumerate(steps)}
    out = {
        "hists_by_dataset": {dataset: hists},
        "cutflow": {dataset: cutflow},
        "entries": {dataset: n_all},
        "sumw": {dataset: float(np.sum(ak.to_numpy(columns["_genw"])))},
        "provider": {provider: n_all},
    }
    if count_nonfinite:  # processors that count them (scores_flagged)
        # rows scored -1 for NaN/inf inputs or outputs (nonfinite="flag"), per dataset
        out["nonfinite_scores"] = {dataset: int(ak.sum(columns["_nonfinite"]))
                                   if "_nonfinite" in columns.fields else 0}
    return out


def _check_steps(fields: Sequence[str], steps: Sequence[str]) -> None:
    if list(fields) != [f"c{k}" for k in range(len(steps))]:
        msg = (f"cutflow columns {list(fields)} do not match the {len(steps)} cutflow steps "
               f"{list(steps)}")
        raise InvalidArgumentError(msg)


def stack_datasets(parts: Sequence[tuple[str, Any]]) -> Any:
    """One histogram over the ``dataset`` axis from per-dataset histograms (each with that
    dataset as its only ``dataset`` bin), datasets in the given order."""
    import hist

    first = parts[0][1]
    axes = list(first.axes)
    i = [ax.name for ax in axes].index("dataset")
    others = [ax for k, ax in enumerate(axes) if k != i]
    if any([ax for k, ax in enumerate(h.axes) if k != i] != others for _, h in parts[1:]):
        # the other growing axes differ between datasets: let hist align them (slow, rare)
        total = parts[0][1].copy()
        for _, h in parts[1:]:
            total = total + h
        return total
    names = [ds for ds, _ in parts]
    axes[i] = hist.axis.StrCategory(names, growth=True, name="dataset", label=axes[i].label)
    out = hist.Hist(*axes, storage=first.storage_type())
    view = out.view(flow=True)
    head = (slice(None),) * i
    for j, (ds, h) in enumerate(parts):
        view[(*head, j)] = h.view(flow=True)[(*head, list(h.axes["dataset"]).index(ds))]
    return out


def merge_dataset_histograms(output: dict[str, Any]) -> dict[str, Any]:
    """``hists_by_dataset`` ({dataset: {name: hist}}) -> ``hists`` ({name: hist over all
    datasets, sorted by name}); outputs without it pass unchanged."""
    by_dataset = output.pop("hists_by_dataset", None)
    if not by_dataset:
        return output
    hists = output.setdefault("hists", {})
    names = list(dict.fromkeys(n for per in by_dataset.values() for n in per))
    for name in names:
        parts = [(ds, by_dataset[ds][name]) for ds in sorted(by_dataset) if name in by_dataset[ds]]
        stacked = stack_datasets(parts)
        hists[name] = stacked if name not in hists else hists[name] + stacked
    return output


# ----------------------------------------------------------------------------- dask-awkward
def lazy_twin(h: Any) -> Any:
    """An empty ``hist.dask.Hist`` with the axes and storage of the eager histogram ``h``: the
    lazy path fills the same binning as the Runner path."""
    import hist.dask

    return hist.dask.Hist(*h.axes, storage=h.storage_type())


def lazy_bookkeeping(columns: Any, *, dataset: str, steps: Sequence[str]) -> dict[str, Any]:
    """The cutflow and raw sum of weights of the lazy path, as ``dask_awkward.sum`` scalars
    of the same columns the eager path counts (:func:`chunk_output`).

    Returns:
        ``{"_lazy": {dataset: {"cutflow": {step: count}, "sumw": sum}}}``, computed with the
        histograms and turned into ``cutflow``/``entries``/``sumw``/``provider`` by
        :func:`finish_output`.
    """
    import dask_awkward as dak

    masks = columns["_cutflow"]
    _check_steps(masks.fields, steps)
    cutflow = {step: dak.sum(masks[f"c{k}"], axis=None) for k, step in enumerate(steps)}
    return {"_lazy": {dataset: {"cutflow": cutflow,
                                "sumw": dak.sum(columns["_genw"], axis=None)}}}


def finish_output(output: dict[str, Any], *, provider: str) -> dict[str, Any]:
    """The processors' ``postprocess``: per-dataset histograms stacked
    (:func:`merge_dataset_histograms`), and on the dask-awkward path the computed sums of
    :func:`lazy_bookkeeping` replaced by the bookkeeping the Runner path
    returns (``cutflow``, ``entries``, ``sumw``, ``provider``)."""
    merge_dataset_histograms(output)
    lazy = output.pop("_lazy", None)
    if not lazy:
        return output
    for key in ("cutflow", "entries", "sumw", "provider", "nonfinite_scores"):
        output.setdefault(key, {})
    for dataset, parts in lazy.items():
        # the lazy path scores under nonfinite="raise" only (refuse_lazy_flag): a NaN score
        # fails the run, so none is hidden
        output["nonfinite_scores"][dataset] = 0
        cutflow = {step: int(count) for step, count in parts["cutflow"].items()}
        output["cutflow"][dataset] = cutflow
        n_all = next(iter(cutflow.values()))  # the first step: all events
        output["entries"][dataset] = n_all
        output["sumw"][dataset] = float(parts["sumw"])
        output["provider"][provider] = output["provider"].get(provider, 0) + n_all
    return output
