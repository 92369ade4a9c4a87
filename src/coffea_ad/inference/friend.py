"""Score a NanoAOD/PFNano file into a ROOT friend tree aligned with it.

The output tree has the input's entry count and order, ``run``, ``luminosityBlock`` and
``event`` copied, and the scores in NanoAOD layout: ``n{Jets}`` plus ``{Jets}_{name}`` for a
jet-level model (``{name}`` for an event-level one), so ROOT's ``AddFriend`` or uproot can read
it next to the original file entry by entry.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from coffea_ad.atomic import atomic_path, refuse_existing, refuse_same_file
from coffea_ad.errors import InvalidArgumentError, MissingBranchError, OutputWriteError
from coffea_ad.inference.contract import file_sha256
from coffea_ad.inference.scorer import NONFINITE_MASK, OnnxScorer
from coffea_ad.remote import input_location, is_url

__all__ = ["ALIGNMENT_BRANCHES", "FriendSummary", "write_score_friend"]

#: Branches copied from the input so the friend can be matched entry by entry.
ALIGNMENT_BRANCHES: tuple[str, ...] = ("run", "luminosityBlock", "event")
#: TreeMaker's names for the same three numbers.
TREEMAKER_ALIGNMENT: tuple[str, ...] = ("RunNum", "LumiBlockNum", "EvtNum")

#: ``schema`` names -> coffea NanoEvents schema class names.
SCHEMAS = {"pfnano": "PFNanoAODSchema", "nanoaod": "NanoAODSchema",
           "treemaker": "TreeMakerSchema", "scouting": "ScoutingNanoAODSchema"}

#: Key of the JSON string (TObjString) describing how the scores were made.
INFO_KEY = "coffea_ad_scores"


@dataclass(frozen=True)
class FriendSummary:
    """What :func:`write_score_friend` wrote.

    Attributes:
        output: the ROOT file written.
        entries: events written (= input entries).
        rows: jets (jet-level model) or events scored.
        branches: score branches written (without the counter).
        provider: execution provider that ran the model (``None`` if nothing was scored).
        seconds: wall time.
        nonfinite_rows: rows flagged (``nonfinite="flag"``) for NaN/inf inputs or outputs.
    """

    output: Path
    entries: int
    rows: int
    branches: tuple[str, ...]
    provider: str | None
    seconds: float
    nonfinite_rows: int = 0


def write_score_friend(
    input_path: str | os.PathLike[str],
    model_path: str | os.PathLike[str] | OnnxScorer,
    output_path: str | os.PathLike[str],
    *,
    tree: str = "Events",
    name: str | None = None,
    step_size: int = 100_000,
    all_outputs: bool = False,
    schema: str = "pfnano",
    overwrite: bool = False,
    **scorer_kwargs: Any,
) -> FriendSummary:
    """Score every event of ``input_path`` and write the friend tree ``tree`` to ``output_path``.

    Features are computed from PFNano NanoEvents (virtual mode, one chunk of ``step_size``
    entries at a time) by :meth:`OnnxScorer.score_events`, so the friend holds exactly what a
    processor using the same model would compute.

    Args:
        input_path: NanoAOD/PFNano ROOT file, local or a ``root://`` / ``https://`` URL
            (:mod:`coffea_ad.remote`); ``tree`` may be a TTree or an RNTuple (the
            friend written is a TTree either way).
        model_path: ``.onnx`` model (sidecar next to it), or a ready :class:`OnnxScorer`.
        output_path: ROOT file to create (written under a temporary name, then renamed);
            never the input.
        tree: tree name, in the input and in the output.
        name: score branch name; default the contract's ``name`` (branch ``FatJet_<name>``).
        step_size: entries per chunk.
        all_outputs: also write every other scalar-per-row output as ``{name}_{output}``.
        schema: NanoEvents schema of the input, a key of :data:`SCHEMAS` (TreeMaker inputs
            are aligned by ``RunNum, LumiBlockNum, EvtNum``, written under those names).
        overwrite: replace an existing ``output_path`` (otherwise it is refused).
        **scorer_kwargs: passed to :class:`OnnxScorer` when ``model_path`` is a path.

    Returns:
        A :class:`FriendSummary`.

    Raises:
        MissingBranchError: the input lacks ``run``/``luminosityBlock``/``event`` or a
            branch the model's features need (no output is written).
        InputOverwriteError: ``output_path`` is the input file.
        OutputExistsError: ``output_path`` exists and ``overwrite`` is false.
        NonFiniteScoreError: the model gives NaN/inf (``nonfinite="raise"``).
    """
    uproot = _uproot()
    import coffea.nanoevents
    from coffea.nanoevents import NanoEventsFactory

    if schema not in SCHEMAS:
        raise InvalidArgumentError(f"schema must be one of {sorted(SCHEMAS)}, given {schema!r}")
    schemaclass = getattr(coffea.nanoevents, SCHEMAS[schema])
    alignment = TREEMAKER_ALIGNMENT if schema == "treemaker" else ALIGNMENT_BRANCHES

    start_time = time.perf_counter()
    scorer = model_path if isinstance(model_path, OnnxScorer) else OnnxScorer(model_path, **scorer_kwargs)
    contract = scorer.contract
    name = name or contract.name
    input_path, output_path = input_location(input_path), Path(output_path)
    if step_size < 1:
        raise InvalidArgumentError(f"step_size must be >= 1, found {step_size}")
    local_input = [] if is_url(input_path) else [input_path]
    refuse_same_file(output_path, [*local_input, scorer.model_path], option="output")
    refuse_existing(output_path, overwrite=overwrite)

    with uproot.open(input_path) as infile:
        if tree not in infile:
            raise MissingBranchError(tree, [k.split(";")[0] for k in infile],
                                     where=str(input_path), needed_for="scoring (tree)")
        intree = infile[tree]
        entries = int(intree.num_entries)
        keys = list(intree.keys())
        for branch in alignment:
            if branch not in keys:
                raise MissingBranchError(branch, keys, where=f"{input_path}:{tree}",
                                         needed_for="aligning the friend tree")
        # dtypes from a zero-entry read: the same call for a TTree and an RNTuple (whose
        # fields have no ``interpretation``)
        id_types = {b: v.dtype.newbyteorder("=") for b, v in intree.arrays(
            list(alignment), entry_stop=0, library="np").items()}

        # which outputs become branches, with their dtypes
        extra = [] if not all_outputs else [
            o.name for o in contract.outputs if o.name != contract.score and not o.shape]
        fields: dict[str, np.dtype[Any]] = {name: np.dtype(np.float32)}
        fields |= {f"{name}_{o}": np.dtype(np.float32) for o in extra}
        if scorer.nonfinite == "flag":
            fields[f"{name}_{NONFINITE_MASK}"] = np.dtype(bool)

        branch_types: dict[str, Any] = {b: id_types[b] for b in alignment}
        jets = scorer.jets if contract.level == "jet" else None
        if jets is not None:
            record = ", ".join(f"{f}: {_prim(dt)}" for f, dt in fields.items())
            branch_types[jets] = ak.types.from_datashape(f"var * {{{record}}}", highlevel=False)
        else:
            branch_types |= fields

        rows = nonfinite_rows = 0
        # written under a temporary name and renamed when complete: a failure leaves any
        # earlier friend file as it was
        with atomic_path(output_path) as tmp_path:
            try:
                outfile = uproot.recreate(tmp_path)
            except OSError as err:
                raise OutputWriteError(f"cannot create the friend file {output_path}: {err}") from err
            with warnings.catch_warnings(), outfile:
                # coffea's schema warns about cross-references PFNano files lack; not ours
                warnings.filterwarnings("ignore", category=RuntimeWarning,
                                        module=r"coffea\.nanoevents")
                outfile.mktree(tree, branch_types)
                for start in range(0, entries, step_size):
                    stop = min(start + step_size, entries)
                    ids = intree.arrays(list(alignment), entry_start=start,
                                        entry_stop=stop, library="np")
                    events = NanoEventsFactory.from_root(
                        {str(input_path): tree}, schemaclass=schemaclass, mode="virtual",
                        entry_start=start, entry_stop=stop,
                    ).events()
                    # the same feature path as a processor: jet, constituent or event model
                    outs = scorer.outputs_from_events(events)
                    chunk: dict[str, Any] = {b: ids[b].astype(id_types[b])
                                             for b in alignment}
                    values = {name: outs[contract.score]}
                    values |= {f"{name}_{o}": outs[o] for o in extra}
                    if scorer.nonfinite == "flag":
                        values[f"{name}_{NONFINITE_MASK}"] = outs[NONFINITE_MASK]
                        nonfinite_rows += int(ak.sum(outs[NONFINITE_MASK]))
                    values = {k: ak.values_astype(v, fields[k]) for k, v in values.items()}
                    if jets is not None:
                        chunk[jets] = ak.zip(values)
                        rows += int(ak.sum(ak.num(values[name], axis=1)))
                    else:
                        chunk |= values
                        rows += len(values[name])
                    outfile[tree].extend(chunk)
                provider = scorer.provider if entries else None
                outfile[INFO_KEY] = json.dumps({
                    "model": contract.name,
                    "model_file": str(scorer.model_path),
                    "model_sha256": file_sha256(scorer.model_path),
                    "score_output": contract.score,
                    "features": contract.features,
                    "level": contract.level,
                    "jets": jets,
                    "provider": provider,
                    "nonfinite": scorer.nonfinite,
                    "nonfinite_rows": nonfinite_rows,
                    "input": str(input_path),
                    "tree": tree,
                    "schema": schema,
                })
    branches = tuple(f"{jets}_{f}" if jets else f for f in fields)
    return FriendSummary(output_path, entries, rows, branches, provider,
                         time.perf_counter() - start_time, nonfinite_rows)


def _prim(dtype: np.dtype) -> str:
    return "bool" if dtype == np.dtype(bool) else str(dtype)


def _uproot() -> Any:
    import uproot

    return uproot
