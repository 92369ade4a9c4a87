"""Throughput of the full chain vs a read-only pass, per stage, and Dask parallel efficiency.

On the same generated PFNano-format files (Pythia8 + FastJet, made once and cached):

1. read-only: coffea Runner (iterative, this process) over the files with a processor that
   materializes exactly the branches the SVJ processor reads with that model (found with
   NanoEvents' access log, and checked to be the same set), through the same NanoEvents,
   and nothing else;
2. full chain: the same Runner with the SVJ processor: NanoEvents, jet->constituent links,
   features, ONNX Runtime scoring of every AK8 jet, m_T, histogram fill, with
   - the dense AE (6 substructure features; trained here for a few epochs), and
   - the shipped constituent-level model ``models/svj_gae.onnx`` (graph AE on ΔR graphs of
     the 50 leading constituents: constituent lists, padding and the adjacency inside the
     ONNX graph are all part of its chain);
3. a per-stage profile of one pass (read, features/graphs, a graph model's adjacency,
   scorer awkward<->numpy and input checks, ONNX Runtime, histograms, the rest), measured in one process by timing those functions
   (exclusive time: a stage called inside another is not counted twice); the read is done
   first through the read-only processor on the same events, so the later stages find the
   branches in memory;
4. the dense chain on a Dask LocalCluster with 1 and with 2 workers (1 thread each) next
   to the iterative executor, at each chunk size of ``--chunksizes``: Dask 1 worker /
   iterative, and parallel efficiency = rate(2 workers) / (2 x rate(1 worker)); with the
   size of one chunk's output (what every Dask task ships back and the tree reduction adds).
   Beside them, the machine's own ceiling: the same datasets split in two halves of equal
   events, run by two plain processes at once (iterative executor, no Dask), against twice
   the rate of one such process running all of them. Where two processes already run each other's work slower (shared
   cores, memory bandwidth, a noisy neighbour), no executor can beat that ratio.

The sides of each comparison run alternately, ``--repeats`` times each after a warm-up
(numba compilation, ONNX session creation), and medians are compared. Targets: dense chain
≥ 0.8 x read-only, constituent chain ≥ 0.4 x read-only, Dask 1 worker ≥ 0.9 x iterative,
2-worker efficiency ≥ 90 % at the default chunk size and at 10k-event chunks.

    python benchmarks/bench_chain.py --events 40000 --events-per-file 20000 --repeats 3

The default chunk size is the one users get (``coffea-ad run`` / ``run_processor``:
100 000, i.e. whole 20 000-event files here); ``--chunksizes 100000,10000`` also runs
10 000-event chunks (twice the tasks and per-chunk costs: file open, output, scheduling).
``--quick`` is a smoke run on small files.

Single-threaded numerics everywhere (OMP_NUM_THREADS=1, ONNX Runtime intra-op threads 1) so
the worker count is the only parallelism.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/onnxruntime are imported

import argparse
import contextlib
import functools
import itertools
import json
import pickle
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from coffea import processor

warnings.filterwarnings("ignore", message="Missing cross-reference index")
warnings.filterwarnings("ignore", message=".*already exists")

REPO = Path(__file__).resolve().parents[1]
GAE_MODEL = REPO / "models" / "svj_gae.onnx"


class ReadOnly(processor.ProcessorABC):
    """Materializes ``branches`` through the same NanoEvents (virtual mode) the chain gets,
    and nothing else: the read cost of the chain, Runner and NanoEvents overheads included."""

    def __init__(self, branches: list[str]) -> None:
        self.branches = list(branches)

    def process(self, events: Any) -> dict[str, Any]:
        import awkward as ak

        for branch in self.branches:
            if branch in events.fields:  # genWeight
                ak.materialize(events[branch])
            elif branch.startswith("n") and branch[1:] in events.fields:  # counts: nFatJet
                ak.materialize(ak.num(events[branch[1:]]))
            else:  # FatJet_pt -> events.FatJet.pt
                collection, field = branch.split("_", 1)
                ak.materialize(events[collection][field])
        return {"entries": {events.metadata["dataset"]: len(events)}}

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        return accumulator


def branches_read(proc: processor.ProcessorABC, path: str) -> list[str]:
    """Branches a processor materializes on one file (NanoEvents access log)."""
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    log: list[Any] = []
    events = NanoEventsFactory.from_root({path: "Events"}, schemaclass=PFNanoAODSchema,
                                         mode="virtual", access_log=log,
                                         metadata={"dataset": "probe"}).events()
    proc.process(events)
    return sorted({entry.branch for entry in log})


def prepare(workdir: Path, events: int, per_file: int, seed: int) -> tuple[dict[str, Any], Path]:
    """Generated qcd + svj files and a dense AE trained on qcd (both cached in workdir)."""
    from coffea_ad.samples import generate_fileset

    samples = workdir / f"samples_{events}_{per_file}"
    fileset_json = samples / "fileset.json"
    if fileset_json.is_file() and {"qcd", "svj"} <= set(json.loads(fileset_json.read_text())):
        fileset = json.loads(fileset_json.read_text())
    else:
        t = time.perf_counter()
        fileset = generate_fileset(
            {"qcd": {"process": "qcd", "events": events, "events_per_file": per_file},
             "svj": {"process": "svj", "events": events // 2, "events_per_file": per_file,
                     "settings": {"mzprime": 3000.0, "rinv": 0.3}}},
            out=samples, seed=seed, jobs=2)
        print(f"generated {events} qcd + {events // 2} svj events in "
              f"{time.perf_counter() - t:.0f} s")
    fileset = {k: fileset[k] for k in ("qcd", "svj")}
    model = samples / "models" / "dense_ae.onnx"
    if not model.is_file():
        from coffea_ad.training import dense_ae

        dense_ae.run({"epochs": 3, "train_datasets": ["qcd"], "seed": seed},
                     {"qcd": fileset["qcd"]}, samples / "models" / "dense_ae")
    return fileset, model


# ----------------------------------------------------------------------------- stages
class StageClock:
    """Exclusive wall time per stage of the functions patched by :meth:`patched`.

    A stage called inside another (the scorer calling ONNX Runtime) is subtracted from the
    outer one, so the stages add up to the time spent in any of them.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stack: list[list[float]] = []  # [start, time of nested stages]

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed_fn(*args: Any, **kwargs: Any) -> Any:
            frame = [time.perf_counter(), 0.0]
            self._stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                self._stack.pop()
                total = time.perf_counter() - frame[0]
                self.seconds[stage] = self.seconds.get(stage, 0.0) + total - frame[1]
                if self._stack:
                    self._stack[-1][1] += total
        return timed_fn

    @contextlib.contextmanager
    def patched(self) -> Iterator[StageClock]:
        import hist

        from coffea_ad import features
        from coffea_ad.features.particles import ParticleBlocks
        from coffea_ad.inference import scorer
        from coffea_ad.inference.scorer import OnnxScorer

        targets = [
            # the scorer imports these from coffea_ad.features at call time
            (features, "jet_features", "features/graphs"),
            (features, "jet_constituents", "features/graphs"),
            (features, "particle_list", "features/graphs"),
            (features, "particle_list_from_events", "features/graphs"),
            (features, "particle_blocks_from_events", "features/graphs"),
            # the particle blocks are written batch by batch, inside the scorer's loop
            (ParticleBlocks, "fill", "features/graphs"),
            (scorer, "derive_graph", "graph adjacency (per batch)"),
            (OnnxScorer, "_dispatch", "scorer awkward<->numpy, checks"),
            (OnnxScorer, "_events_dispatch", "scorer awkward<->numpy, checks"),
            (OnnxScorer, "_nonfinite_rows", "scorer awkward<->numpy, checks"),
            (OnnxScorer, "_run_batched", "ONNX Runtime"),
            (hist.Hist, "fill", "histograms"),
        ]
        # hist.Hist inherits fill: restore by deleting what was not in the class itself
        saved = [(owner, name, vars(owner).get(name)) for owner, name, _ in targets]
        for owner, name, stage in targets:
            setattr(owner, name, self.wrap(stage, getattr(owner, name)))
        try:
            yield self
        finally:
            for owner, name, original in saved:
                if original is None:
                    delattr(owner, name)
                else:
                    setattr(owner, name, original)


def profile_stages(fileset: dict[str, Any], reader: ReadOnly, chain: Any, chunksize: int,
                   n_events: int) -> tuple[dict[str, float], list[int]]:
    """Seconds per stage of one pass over the chunks the Runner would make (this process,
    NanoEvents in virtual mode as the Runner builds them), and the pickled size of each
    chunk's output: what a Dask task ships back and the tree reduction adds up."""
    import uproot
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    clock = StageClock()
    sizes: list[int] = []
    seen = 0
    with clock.patched():
        for dataset, entry in fileset.items():
            for path in entry["files"]:
                with uproot.open(path) as f:
                    total = f["Events"].num_entries
                nchunks = max(1, round(total / chunksize))
                edges = [total * k // nchunks for k in range(nchunks + 1)]
                for start, stop in itertools.pairwise(edges):
                    t = time.perf_counter()
                    events = NanoEventsFactory.from_root(
                        {path: "Events"}, schemaclass=PFNanoAODSchema, mode="virtual",
                        entry_start=start, entry_stop=stop,
                        metadata={"dataset": dataset, "filename": path,
                                  "entrystart": start, "entrystop": stop}).events()
                    reader.process(events)
                    clock.seconds["read"] = clock.seconds.get("read", 0.0) + (
                        time.perf_counter() - t)
                    t = time.perf_counter()
                    out = chain.process(events)
                    clock.seconds["chain"] = clock.seconds.get("chain", 0.0) + (
                        time.perf_counter() - t)
                    sizes.append(len(pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)))
                    seen += stop - start
    assert seen == n_events, (seen, n_events)
    stages = dict(clock.seconds)
    chain_total = stages.pop("chain")
    inner = sum(v for k, v in stages.items() if k != "read")
    stages["selection, m_T, bookkeeping"] = chain_total - inner
    return stages, sizes


# ----------------------------------------------------------------------------- timing
def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds of this process, and the result of ``fn()``."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def alternate(funcs: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Each function (returning a rate) once as warm-up, then in turn ``repeats`` times."""
    for f in funcs.values():
        f()
    rates: dict[str, list[float]] = {k: [] for k in funcs}
    for _ in range(repeats):
        for k, f in funcs.items():
            rates[k].append(f())
    return rates


def _iterative_events(fs: dict[str, Any], proc: processor.ProcessorABC, chunksize: int) -> int:
    """One iterative run in this (pool) process; the events it processed."""
    from coffea_ad.execution import run_processor

    out = run_processor(fs, proc, chunksize=chunksize, executor="iterative")
    return int(out["run_info"]["entries_processed"])


def halves(fs: dict[str, Any]) -> list[dict[str, Any]]:
    """The datasets in two groups of about equal events (largest first, to the lighter)."""
    groups: list[dict[str, Any]] = [{}, {}]
    load = [0, 0]
    for name, entry in sorted(fs.items(), key=lambda kv: -kv[1]["metadata"]["nevents"]):
        k = load.index(min(load))
        groups[k][name] = entry
        load[k] += entry["metadata"]["nevents"]
    return groups


@contextlib.contextmanager
def process_pair(fs: dict[str, Any], proc: processor.ProcessorABC,
                 chunksize: int) -> Iterator[dict[str, Callable[[], float]]]:
    """Two rate functions on two spawned, warmed-up plain processes (no Dask): all the work
    in one of them, and the work split in halves over both at once. Their ratio is what this
    machine gives two workers of this chain: the ceiling of any 2-worker executor here
    (both sides in the same kind of process, away from this one's Dask schedulers)."""
    import concurrent.futures
    import multiprocessing

    parts = halves(fs)
    with concurrent.futures.ProcessPoolExecutor(
            2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_iterative_events, parts, [proc] * 2, [chunksize] * 2))

        def both() -> float:
            t = time.perf_counter()
            n = sum(pool.map(_iterative_events, parts, [proc] * 2, [chunksize] * 2))
            return n / (time.perf_counter() - t)

        def single() -> float:
            t = time.perf_counter()
            n = pool.submit(_iterative_events, fs, proc, chunksize).result()
            return n / (time.perf_counter() - t)
        yield {"1 plain process": single, "2 plain processes": both}


def show(rates: dict[str, list[float]]) -> dict[str, float]:
    med = {k: statistics.median(v) for k, v in rates.items()}
    for k, v in rates.items():
        print(f"  {k:<26} {med[k]:9.0f} ev/s   ({min(v):.0f}..{max(v):.0f})")
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40000, help="qcd events (svj: half)")
    parser.add_argument("--events-per-file", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunksizes", default="100000,10000",
                        help="chunk sizes of the Dask comparison (the first one, run_processor's "
                             "and the CLI's default, is also the one of the chain comparison)")
    parser.add_argument("--replicas", type=int, default=1,
                        help="process each generated dataset this many times per run")
    parser.add_argument("--dask-replicas", type=int, default=4,
                        help="the same for the Dask comparison: enough chunks (12 at the "
                             "default chunk size) to keep 2 workers busy to the end")
    parser.add_argument("--dask-repeats", type=int, default=2)
    parser.add_argument("--models", default="dense,gae",
                        help="chains to compare with read-only: dense (the dense AE), gae "
                             "(models/svj_gae.onnx)")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask comparison")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/coffea_ad_bench"))
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2000 events in 1000-event files, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.events, args.events_per_file, args.repeats, args.replicas = 2000, 1000, 1, 1
        args.dask_replicas, args.dask_repeats = 1, 1
        args.chunksizes = "100000,500"

    from coffea_ad.execution import dask_client, run_processor
    from coffea_ad.processors.svj import SVJProcessor

    args.workdir.mkdir(parents=True, exist_ok=True)
    generated, dense_model = prepare(args.workdir, args.events, args.events_per_file, args.seed)
    # each dataset listed --replicas times: longer runs on the same files, so the fixed cost
    # of a run (planning, shipping the processor, merging) does not dominate the rates
    fileset = {f"{name}_{k}": entry for k in range(args.replicas)
               for name, entry in generated.items()}
    n_events = sum(d["metadata"]["nevents"] for d in fileset.values())
    n_files = sum(len(d["files"]) for d in fileset.values())
    chunksizes = [int(c) for c in args.chunksizes.split(",")]
    first_file = next(iter(generated["qcd"]["files"]))
    print(f"{n_events} events per run ({args.replicas} passes over {n_files // args.replicas} "
          f"files of <= {args.events_per_file} events)")

    models = {"dense": dense_model, "gae": GAE_MODEL}
    chains, readers = {}, {}
    for key in args.models.split(","):
        chain = SVJProcessor(models[key], tag_threshold=0.5,
                             scorer_options={"intra_op_threads": 1})
        branches = branches_read(chain, first_file)
        reader = ReadOnly(branches)
        assert branches_read(reader, first_file) == branches, "read-only reads other branches"
        chains[key], readers[key] = chain, reader
        print(f"  {key}: {Path(models[key]).name}, the chain reads {len(branches)} branches: "
              f"{', '.join(branches)}")

    def run(proc: processor.ProcessorABC, chunksize: int, cpu: list[float] | None = None,
            fs: dict[str, Any] = fileset, **kw: Any) -> float:
        wall, cpu_s, out = timed(lambda: run_processor(fs, proc, chunksize=chunksize, **kw))
        n_events = out["run_info"]["entries_processed"]
        assert n_events == sum(d["metadata"]["nevents"] for d in fs.values()), out["run_info"]
        if cpu is not None:  # in-process runs: CPU time is what other users can't steal
            cpu.append(n_events / cpu_s)
        return n_events / wall

    cs0 = chunksizes[0]
    summary: list[str] = []
    for key, chain in chains.items():
        reader = readers[key]
        cpu_read: list[float] = []
        cpu_chain: list[float] = []
        print(f"\n[{key}] iterative, chunksize {cs0}: events/s (median of {args.repeats}; "
              "min..max)")
        med = show(alternate({
            f"read-only ({key} branches)": lambda r=reader, c=cpu_read: run(
                r, cs0, c, executor="iterative"),
            f"full chain ({key})": lambda p=chain, c=cpu_chain: run(
                p, cs0, c, executor="iterative"),
        }, args.repeats))
        rates = list(med.values())
        target = 0.8 if key == "dense" else 0.4
        ratio = rates[1] / rates[0]
        # the warm-up runs are not in the CPU lists' medians: drop them
        cpu_ratio = statistics.median(cpu_chain[1:]) / statistics.median(cpu_read[1:])
        line = (f"{key} chain / read-only = {ratio:.2f}  (target >= {target}: "
                f"{'met' if ratio >= target else 'NOT met'}; per CPU second {cpu_ratio:.2f})")
        print("  " + line)
        summary.append(line)

        stages, sizes = profile_stages(fileset, reader, chain, cs0, n_events)
        total = sum(stages.values())
        print(f"  per-stage profile, one pass ({total:.2f} s, {len(sizes)} chunks): "
              "ms per 1000 events, share, ratio to read")
        for stage, sec in sorted(stages.items(), key=lambda kv: -kv[1]):
            print(f"    {stage:<40} {sec / n_events * 1e6:8.1f}  {sec / total:6.1%}  "
                  f"{sec / stages['read']:5.2f}")
        print(f"  chunk output pickled: median {statistics.median(sizes) / 1e6:.2f} MB")
        # what the target leaves for the work on top of the read, against what each part takes
        per_k = 1e6 / n_events  # seconds -> ms per 1000 events
        budget = stages["read"] * (1 / target - 1)
        print(f"  at the target, everything but the read may take {budget * per_k:.1f} ms per "
              f"1000 events ({1 / target - 1:.2f} x the read); it takes "
              f"{(total - stages['read']) * per_k:.1f}, of which ONNX Runtime "
              f"{stages.get('ONNX Runtime', 0.0) * per_k:.1f} and features/graphs "
              f"{stages.get('features/graphs', 0.0) * per_k:.1f}")

    if not args.no_dask and "dense" in chains:
        chain = chains["dense"]
        dfs = {f"{name}_{k}": entry for k in range(args.dask_replicas)
               for name, entry in generated.items()}
        d_events = sum(d["metadata"]["nevents"] for d in dfs.values())
        for cs in chunksizes:
            print(f"\n[dense] Dask vs iterative, chunksize {cs}, {d_events} events per run: "
                  f"events/s (median of {args.dask_repeats}; min..max; cluster start not "
                  "timed)")
            with dask_client(workers=1, threads=1) as one, dask_client(
                    workers=2, threads=1) as two, process_pair(dfs, chain, cs) as pair:
                med = show(alternate({
                    "iterative": lambda c=cs: run(chain, c, fs=dfs, executor="iterative"),
                    "dask x1": lambda c=cs: run(chain, c, fs=dfs, client=one),
                    "dask x2": lambda c=cs: run(chain, c, fs=dfs, client=two),
                    **pair,
                }, args.dask_repeats))
            one_vs_it = med["dask x1"] / med["iterative"]
            eff = med["dask x2"] / (2 * med["dask x1"])
            ceiling = med["2 plain processes"] / (2 * med["1 plain process"])
            lines = [(f"chunksize {cs}: dask 1 worker / iterative = {one_vs_it:.2f} "
                      f"(target >= 0.9: {'met' if one_vs_it >= 0.9 else 'NOT met'})"),
                     (f"chunksize {cs}: 2-worker efficiency = {eff:.0%} (target >= 90%: "
                      f"{'met' if eff >= 0.9 else 'NOT met'}); without Dask, this machine "
                      f"gives 2 plain processes {ceiling:.0%}")]
            for line in lines:
                print("  " + line)
                summary.append(line)

    print("\nsummary")
    for line in summary:
        print("  " + line)
    print(f"cpu count {os.cpu_count()}, load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
