"""Events/s of bare Pythia vs the full generator (detector + FastJet + writing), and --jobs scaling.

Bare Pythia and the full generator run the same Pythia commands (same process, settings and
seed) side by side in one process, interleaved over ``--repeats`` rounds; medians are printed
with their ratio (target: full >= 0.75x bare). The full generator writes one file of
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

os.environ.setdefault("OMP_NUM_THREADS", "1")


def bare_rate(process: str, settings: dict, events: int, seed: int) -> tuple[float, float]:
    import pythia8mc

    from coffea_ad.samples.processes import pythia_commands

    pythia = pythia8mc.Pythia("", False)
    for cmd in pythia_commands(process, settings, seed=seed):
        pythia.readString(cmd)
    pythia.init()
    start, cpu = time.perf_counter(), time.process_time()
    done = 0
    while done < events:
        done += bool(pythia.next())
    return events / (time.perf_counter() - start), events / (time.process_time() - cpu)


def full_rate(process: str, settings: dict, events: int, seed: int, folder: Path) -> tuple[float, float]:
    from coffea_ad.samples.events import EventMaker
    from coffea_ad.samples.generate import _CHUNK
    from coffea_ad.samples.writer import EventsWriter

    maker = EventMaker(process, settings, seed=seed)
    start, cpu = time.perf_counter(), time.process_time()
    with EventsWriter(folder / "bench.root") as writer:
        done = 0
        while done < events:
            n = min(_CHUNK, events - done)
            writer.write(maker.make(n, first_event=done + 1))
            done += n
    return events / (time.perf_counter() - start), events / (time.process_time() - cpu)


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
    with tempfile.TemporaryDirectory() as tmp:
        # once per process: imports, numba kernels loaded from their cache, FastJet banner
        full_rate(process, settings, 20, args.seed, Path(tmp))
        for r in range(args.repeats):
            seed = args.seed + r
            bare.append(bare_rate(process, settings, args.events, seed))
            full.append(full_rate(process, settings, args.events, seed, Path(tmp)))
            print(f"round {r}: bare Pythia {bare[-1][0]:7.1f} ev/s ({bare[-1][1]:7.1f} per CPU s)   "
                  f"full generator {full[-1][0]:7.1f} ev/s ({full[-1][1]:7.1f} per CPU s)")
    print(f"{label}, {args.events} events x {args.repeats} rounds, medians, one process")
    print("                     wall ev/s   CPU ev/s   CPU ms/event")
    for name, rates in (("bare Pythia", bare), ("full generator", full)):
        wall, cpu = (statistics.median(r[i] for r in rates) for i in (0, 1))
        print(f"  {name:<16}: {wall:9.1f}  {cpu:9.1f}  {1e3 / cpu:9.3f}")
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
