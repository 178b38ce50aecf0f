"""CPU seconds of stages' runners, run one after another in one process (as the pipeline's shared kernel runs
them), on a copy of a run directory whose upstream stages are done. Prints a table; asserts nothing.

    thinkalike-ml run --until features                    # once: a default run up to the models stage
    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python bench/bench_stage_cpu.py reports/<run> \
        --stages models,evaluation,interpretability [--profile 25] [--compare reports/<other run>]

CPU time (`time.process_time`), not wall time, so the figures hold on a machine shared with other jobs.
Imports are paid by the first stage that needs them (mlflow, skops, shap), as in a pipeline run. The
runners only: a stage notebook's report cells (figures, tables) and its HTML page are not included.
`--profile N` prints each stage's N costliest functions (cProfile, cumulative); `--compare` checks that
every metric of the chosen stages equals the other run's exactly, timings and memory excepted.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def compare_metrics(a: dict, b: dict, stages: list[str]) -> list[str]:
    "The metrics of `stages` that differ between two runs' metrics.json (timings and memory excepted)."
    from thinkalike_ml.registry import IGNORED_METRICS
    out = []
    for s in stages:
        x, y = a.get(s, {}), b.get(s, {})
        for k in sorted(set(x) | set(y)):
            if any(i in k for i in IGNORED_METRICS): continue
            u, v = x.get(k, "(missing)"), y.get(k, "(missing)")
            if u != v and not (isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v)):
                out.append(f"{s}.{k}: {u!r} vs {v!r}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a run directory whose stages before the first of --stages are done")
    ap.add_argument("--stages", default="models,evaluation,interpretability", help="comma-separated stages, in pipeline order")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="print each stage's N costliest functions (cProfile)")
    ap.add_argument("--compare", metavar="RUN", help="a run directory whose metrics of these stages must be identical")
    ap.add_argument("--keep", metavar="DIR", help="write the copy here (kept) instead of a temporary folder")
    args = ap.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    t = time.process_time()
    from thinkalike_ml.runs import RunDirectory
    from thinkalike_ml.stages import execute_stage, quiet_libraries, stage
    quiet_libraries()
    for s in stages: stage(s)  # unknown names fail before any work
    print(f"library import: {time.process_time() - t:.2f} s CPU")
    tmp = None
    if args.keep:
        dest = Path(args.keep)
        if dest.exists(): raise SystemExit(f"{dest} exists: choose a new folder for --keep")
    else:
        tmp = tempfile.mkdtemp(prefix="bench-stage-cpu-")
        dest = Path(tmp) / "run"
    try:
        shutil.copytree(args.run, dest)
        run = RunDirectory(dest)
        rows = []
        for s in stages:
            prof = cProfile.Profile() if args.profile else None
            w, c = time.perf_counter(), time.process_time()
            if prof: prof.enable()
            execute_stage(run, s, run.params)
            if prof: prof.disable()
            rows.append((s, time.process_time() - c, time.perf_counter() - w))
            print(f"{s:>18}: {rows[-1][1]:7.2f} s CPU {rows[-1][2]:7.2f} s wall" + ("  (under cProfile)" if prof else ""), flush=True)
            if prof: pstats.Stats(prof).sort_stats("cumulative").print_stats(args.profile)
        print(f"{'total':>18}: {sum(r[1] for r in rows):7.2f} s CPU {sum(r[2] for r in rows):7.2f} s wall; load average {os.getloadavg()[0]:.2f}")
        if args.compare:
            diff = compare_metrics(json.loads((Path(args.compare) / "metrics.json").read_text()), run.read_json("metrics.json"), stages)
            print("metrics identical to", args.compare if not diff else f"{len(diff)} metrics differ from {args.compare}:")
            for d in diff: print("  ", d)
            return 1 if diff else 0
    finally:
        if tmp: shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
