"""Events/s of bare Pythia vs the full generator (detector + FastJet + writing), and --jobs scaling.

Bare Pythia and the full generator run the same Pythia commands (same process, settings and
seed) side by side in one process, interleaved chunk by chunk (see :func:`interleaved_rates`), for
``--repeats`` rounds of different seeds; medians are printed with their ratio (target: full >=
0.75x bare) and the full generator's CPU time by stage. The full generator writes one file of
``--events`` events (default 5000, the generator's default file size: the per-file cost of
creating the ROOT tree is then counted as a user pays it). Then ``coffea-ad generate`` is run
end to end as a user runs it (a fresh process: imports, worker start, Pythia init, files,
fileset) with ``--jobs 1`` and ``--jobs 2`` on the same request (4 files), alternately.

    python benchmarks/bench_generate.py --process qcd --events 5000 --repeats 3
    python benchmarks/bench_generate.py --process qcd --set mpi=true --events 1000 --skip-jobs
    python benchmarks/bench_generate.py --process all --events 2000 --skip-jobs   # every process

Rates are given both per wall-clock second and per CPU second of this process
(``time.process_time``): on a shared machine the CPU-time ratio is the robust one, the --jobs
scaling can only be seen in wall time on free cores (the load average is printed with it).
One thread per process (OMP_NUM_THREADS=1 is set here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

os.environ.setdefault("OMP_NUM_THREADS", "1")


class _Clock:
    """Wall and CPU seconds accumulated over the intervals it times."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Self:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


def interleaved_rates(
    process: str, settings: dict, events: int, seed: int, folder: Path
) -> tuple[tuple[float, float], tuple[float, float], dict[str, float]]:
    """Bare Pythia and the full generator on the same seed, interleaved chunk by chunk.

    Both instances are initialised first (not timed); then each chunk of events is generated
    by bare Pythia (``Pythia.next`` only) and by the full generator (``EventMaker.make`` and
    ``EventsWriter.write``, one file of ``events`` events, its closing included), one after
    the other, so that both see the same machine conditions (on a shared machine the speed of
    a core drifts by ±10 % over tens of seconds; measuring one side after the other would put
    that drift into the ratio). Returns (wall, CPU) events/s of each and the full generator's
    CPU ms/event by stage.
    """
    import pythia8mc

    from coffea_ad.samples.events import EventMaker
    from coffea_ad.samples.generate import _CHUNK
    from coffea_ad.samples.processes import pythia_commands
    from coffea_ad.samples.writer import EventsWriter

    pythia = pythia8mc.Pythia("", False)
    for cmd in pythia_commands(process, settings, seed=seed):
        pythia.readString(cmd)
    pythia.init()
    maker = EventMaker(process, settings, seed=seed)
    bare, full, writing = _Clock(), _Clock(), _Clock()
    writer = EventsWriter(folder / "bench.root")
    done = 0
    while done < events:
        n = min(_CHUNK, events - done)
        with bare:
            k = 0
            while k < n:
                k += bool(pythia.next())
        with full:
            chunk = maker.make(n, first_event=done + 1)
            with writing:
                writer.write(chunk)
        done += n
    with full, writing:
        writer.close()  # baskets flushed, tree metadata written
    stages = {**maker.timings, "writing": writing.cpu}
    return ((events / bare.wall, events / bare.cpu), (events / full.wall, events / full.cpu),
            {k: 1e3 * v / events for k, v in stages.items()})


def cli_seconds(process: str, overrides: list[str], events: int, seed: int, jobs: int, folder: Path) -> float:
    """Wall time of ``coffea-ad generate`` in a fresh process, 4 files, ``--jobs jobs``."""
    exe = Path(sys.executable).with_name("coffea-ad")
    cmd = [str(exe), "generate", process, "--events", str(events), "--seed", str(seed),
           "--out", str(folder), "--jobs", str(jobs), "--events-per-file", str(max(1, events // 4)),
           "--no-progress"]
    for item in overrides:
        cmd += ["--set", item]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - start


def measure_rates(process: str, overrides: list[str], args: argparse.Namespace) -> tuple[float, float]:
    """Print the interleaved bare/full rounds of one process; return the median wall and CPU ratios."""
    from coffea_ad.cli import parse_settings
    from coffea_ad.samples.processes import resolve_settings

    settings = resolve_settings(process, parse_settings(tuple(overrides)))
    bare, full = [], []
    label = " ".join([process, *overrides])
    print(f"\n== {label} (load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    stage_runs = []
    with tempfile.TemporaryDirectory() as tmp:
        # once per process: imports, numba kernels loaded from their cache, FastJet banner
        interleaved_rates(process, settings, 20, args.seed, Path(tmp))
        for r in range(args.repeats):
            b, f, stages = interleaved_rates(process, settings, args.events, args.seed + r, Path(tmp))
            bare.append(b)
            full.append(f)
            stage_runs.append(stages)
            print(f"round {r}: bare Pythia {b[0]:7.1f} ev/s ({b[1]:7.1f} per CPU s)   "
                  f"full generator {f[0]:7.1f} ev/s ({f[1]:7.1f} per CPU s)")
    print(f"{label}, {args.events} events x {args.repeats} rounds, medians, one process")
    print("                     wall ev/s   CPU ev/s   CPU ms/event")
    for name, rates in (("bare Pythia", bare), ("full generator", full)):
        wall, cpu = (statistics.median(r[i] for r in rates) for i in (0, 1))
        print(f"  {name:<16}: {wall:9.1f}  {cpu:9.1f}  {1e3 / cpu:9.3f}")
    stages = {k: statistics.median(run.get(k, 0.0) for run in stage_runs) for k in stage_runs[0]}
    print("  full generator CPU ms/event by stage (medians): "
          + ", ".join(f"{k} {v:.3f}" for k, v in stages.items()))
    wall_ratio = statistics.median(f[0] / b[0] for f, b in zip(full, bare, strict=True))
    cpu_ratio = statistics.median(f[1] / b[1] for f, b in zip(full, bare, strict=True))
    print(f"  ratio full/bare : {wall_ratio:9.2f}  {cpu_ratio:9.2f}   (target >= 0.75; median of per-round ratios)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return wall_ratio, cpu_ratio


def main() -> None:
    from coffea_ad.samples import PROCESSES

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--process", default="qcd",
                        help="process, comma-separated processes, or 'all' (the --jobs part uses the first)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="process setting, as for coffea-ad generate (repeatable; one process only)")
    parser.add_argument("--events", type=int, default=5000, help="events per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs-events", type=int, default=8000,
                        help="events of the --jobs 1 vs 2 comparison (4 files)")
    parser.add_argument("--skip-jobs", action="store_true", help="skip the --jobs scaling part")
    args = parser.parse_args()
    processes = list(PROCESSES) if args.process == "all" else args.process.split(",")
    unknown = [p for p in processes if p not in PROCESSES]
    if unknown:
        parser.error(f"unknown process(es) {unknown}; valid: {', '.join(PROCESSES)} or 'all'")
    if args.overrides and len(processes) > 1:
        parser.error("--set applies to one process; give a single --process with it")

    ratios = {p: measure_rates(p, args.overrides, args) for p in processes}
    if len(processes) > 1:
        print(f"\nsummary, {args.events} events x {args.repeats} rounds: full generator / bare Pythia"
              " (median of per-round ratios; target >= 0.75)")
        print("  process            wall    CPU")
        for p, (wall, cpu) in ratios.items():
            print(f"  {p:<16} {wall:6.2f} {cpu:6.2f}")

    if args.skip_jobs:
        return
    process, label = processes[0], " ".join([processes[0], *args.overrides])
    seconds: dict[int, list[float]] = {1: [], 2: []}
    for r in range(args.repeats):
        for jobs in (1, 2) if r % 2 == 0 else (2, 1):
            with tempfile.TemporaryDirectory() as tmp:
                seconds[jobs].append(cli_seconds(process, args.overrides, args.jobs_events,
                                                 args.seed, jobs, Path(tmp)))
    t1, t2 = statistics.median(seconds[1]), statistics.median(seconds[2])
    print(f"\ncoffea-ad generate {label} --events {args.jobs_events} (4 files), fresh process each,"
          f" medians of {args.repeats}")
    print(f"  --jobs 1 : {t1:6.2f} s  {args.jobs_events / t1:8.1f} events/s")
    print(f"  --jobs 2 : {t2:6.2f} s  {args.jobs_events / t2:8.1f} events/s   speed-up {t1 / t2:.2f}x on "
          f"{os.cpu_count()} cores, parallel efficiency {t1 / t2 / 2:.0%} (load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
