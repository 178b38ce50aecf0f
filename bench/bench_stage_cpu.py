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

    .venv/bin/python bench/bench_stage_cpu.py reports/<run> --same-as reports/<other run>   # runs no stage

compares two finished runs whole and prints how many values it compared: every stage's metrics, every Parquet
table (exactly, columns of timings, memory and clock time excepted) and the MLflow run's parameters and metrics, its
nested trial runs' too (timings excepted, and the registry's version numbers, which count what earlier runs registered
in the same store). Exit status 1 if anything differs.
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


def compare_metrics(a: dict, b: dict, stages: list[str], also_ignored: tuple = ()) -> list[str]:
    "The metrics of `stages` that differ between two runs' metrics.json (timings and memory excepted, and names containing `also_ignored`)."
    from thinkalike_ml.registry import IGNORED_METRICS
    out = []
    for s in stages:
        x, y = a.get(s, {}), b.get(s, {})
        for k in sorted(set(x) | set(y)):
            if any(i in k for i in IGNORED_METRICS + tuple(also_ignored)): continue
            u, v = x.get(k, "(missing)"), y.get(k, "(missing)")
            if u != v and not (isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v)):
                out.append(f"{s}.{k}: {u!r} vs {v!r}")
    return out


TABLE_NOISE = ("rss_mib", "ms_per_row", "computed_at")  # table columns of memory, scoring speed and clock time (monitoring, serving)
REGISTRY_STATE = ("registry_version", "semver_")  # metrics that count the versions earlier runs registered in the same store


def _timing(name: str, table: bool = False) -> bool:
    from thinkalike_ml.registry import IGNORED_METRICS
    return any(i in name for i in IGNORED_METRICS + REGISTRY_STATE + (TABLE_NOISE if table else ()))


def compare_tables(a: Path, b: Path) -> tuple[int, list[str]]:
    "Every Parquet file under two run folders read and compared exactly (timing and memory columns left out): (values compared, differences)."
    import pandas as pd
    fa, fb = ({str(f.relative_to(r)) for f in r.rglob("*.parquet") if "mlruns" not in f.parts} for r in (a, b))
    out, n = [f"{f}: only in {a if f in fa else b}" for f in sorted(fa ^ fb)], 0
    for f in sorted(fa & fb):
        x, y = pd.read_parquet(a / f), pd.read_parquet(b / f)
        if list(x.columns) != list(y.columns) or len(x) != len(y):
            out.append(f"{f}: columns or rows differ"); continue
        keep = [c for c in x.columns if not _timing(str(c), table=True)]
        n += len(x) * len(keep)
        if not x[keep].equals(y[keep]): out.append(f"{f}: values differ in {[c for c in keep if not x[c].equals(y[c])]}")
    return n, out


def _mlflow_runs(run: Path) -> dict:
    "The run's MLflow run and its nested trial runs: {name: (params, metrics without timings)}."
    import mlflow
    rec = json.loads((run / "artifacts/tracking.json").read_text())
    client = mlflow.MlflowClient(rec["tracking_uri"])
    top = client.get_run(rec["run_id"])
    nested = client.search_runs([rec["experiment_id"]], f"tags.mlflow.parentRunId = '{rec['run_id']}'", max_results=10_000)
    clean = lambda r: (dict(r.data.params), {k: v for k, v in r.data.metrics.items() if not _timing(k)})
    return {"(run)": clean(top)} | {r.info.run_name: clean(r) for r in nested}


def compare_mlflow(a: Path, b: Path) -> tuple[int, list[str]]:
    "The MLflow parameters and metrics of two runs (and their nested runs, matched by name): (values compared, differences)."
    ra, rb = _mlflow_runs(a), _mlflow_runs(b)
    out, n = [f"MLflow run {k}: only in one run" for k in sorted(set(ra) ^ set(rb))], 0
    for k in sorted(set(ra) & set(rb)):
        for kind, x, y in (("param", ra[k][0], rb[k][0]), ("metric", ra[k][1], rb[k][1])):
            n += len(set(x) | set(y))
            out += [f"MLflow {k} {kind} {p}: {x.get(p, '(missing)')!r} vs {y.get(p, '(missing)')!r}" for p in sorted(set(x) | set(y))
                    if x.get(p) != y.get(p) and not (isinstance(x.get(p), float) and isinstance(y.get(p), float) and math.isnan(x[p]) and math.isnan(y[p]))]
    return n, out


def same_as(a: Path, b: Path) -> int:
    "Compare two finished runs whole; print what was compared and every difference."
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    stages = sorted(set(ma) | set(mb))
    diff = compare_metrics(ma, mb, stages, REGISTRY_STATE)
    n_metrics = sum(len([k for k in set(ma.get(s, {})) | set(mb.get(s, {})) if not _timing(k)]) for s in stages)
    n_tables, dt = compare_tables(a, b)
    n_mlflow, dm = compare_mlflow(a, b)
    print(f"metrics.json: {n_metrics} metrics of {len(stages)} stages compared, {len(diff)} differ")
    print(f"Parquet tables: {n_tables} values compared, {len(dt)} tables differ")
    print(f"MLflow: {n_mlflow} parameters and metrics compared (run and nested runs), {len(dm)} differ")
    for d in diff + dt + dm: print("  ", d)
    return 1 if diff or dt or dm else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a run directory whose stages before the first of --stages are done")
    ap.add_argument("--stages", default="models,evaluation,interpretability", help="comma-separated stages, in pipeline order")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="print each stage's N costliest functions (cProfile)")
    ap.add_argument("--compare", metavar="RUN", help="a run directory whose metrics of these stages must be identical")
    ap.add_argument("--keep", metavar="DIR", help="write the copy here (kept) instead of a temporary folder")
    ap.add_argument("--same-as", metavar="RUN", help="run no stage: compare the two finished runs whole (metrics, Parquet tables, MLflow)")
    args = ap.parse_args(argv)
    if args.same_as: return same_as(Path(args.run), Path(args.same_as))
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
