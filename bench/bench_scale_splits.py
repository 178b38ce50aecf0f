"""The splits stage on the pandas and the Dask engine, on dataset versions the Dask engine made, at growing sizes.

Per size, the generator's raw tables are made once (in pandas, in their own process: `bench_scale.generate`) as Parquet
folders, the Dask engine's data stage reads them as own files and its workers write the dataset version (the big tables
as folders of Parquet parts). Then the splits stage (`splits.run_splits_stage`, everything the stage computes and
stores) runs on that version once per engine and per (interaction split, matcher split), each in its own process:

- pandas: the whole version read into pandas (`data.load_dataset`), split in one process;
- dask: the suggestions (`splits.suggestion_splits_dask`) and the interactions (`splits.interaction_splits_dask`) split on
  a local cluster of 2 single-threaded worker processes (`engine.local_cluster`, started before the stage is timed and
  reached through `dask_scheduler`).

The runs: every interaction split of `--strategies` with the first matcher split of `--matcher-splits`, then every
further matcher split with the first interaction split. With matcher split `group`, the raw suggestions get a group column
`event` (a two-week period; the generator makes none), declared as `group_column` to the data stage.

It prints the stage's seconds (for pandas, the seconds of its suggestion steps; for dask, those of the steps of both Dask
functions and the bytes per suggestion the client gathers against those the workers read), the client's peak resident memory (ru_maxrss), the workers' peaks,
and the peak of the summed resident memory of the process's whole tree (client, nannies, workers), sampled every second;
then whether the engines stored identical split tables, summary and comparison.

    nice -n 15 env OMP_NUM_THREADS=1 .venv/bin/python bench/bench_scale_splits.py --sizes 10 100 --items 300
    nice -n 15 env OMP_NUM_THREADS=1 .venv/bin/python bench/bench_scale_splits.py --sizes 10 --strategies global_time \\
        --matcher-splits time stratified group users
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scale  # noqa: E402  (its generator and its part size)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def add_events(folder: str) -> None:
    "Give the raw suggestions' parts a group column 'event': the two-week period of the suggestion (-1 where its time does not parse)."
    import pandas as pd
    for f in sorted(Path(folder).glob("part-*.parquet")):
        df = pd.read_parquet(f)
        week = pd.to_datetime(df["timestamp"], errors="coerce").dt.day_of_year // 14
        df.assign(event="ev" + week.fillna(-1).astype(int).astype(str)).to_parquet(f, index=False)


def make_version(files: dict, store: str, run_dir: str, group_column: str = "") -> dict:
    "The Dask engine's data stage on the raw Parquet folders; the dataset version record (its workers write the version into `store`)."
    os.environ.setdefault("THINKALIKE_PSEUDONYM_KEY", "bench-key")
    from thinkalike_ml.config import resolve_params
    from thinkalike_ml.data import dataset_version, run_data_stage
    from thinkalike_ml.runs import RunDirectory
    params = resolve_params(overrides={"source": "files", "files": files, "engine": "dask", "dask_partition_rows": bench_scale.PART_ROWS,
                                       "dataset_store": store, "group_column": group_column})
    run = RunDirectory.create(params, run_dir)
    t = time.perf_counter()
    run_data_stage(run, params)
    return {"record": dataset_version(run), "data_stage_s": time.perf_counter() - t, "client_peak_mib": _peak_mib()}


def _timed(fn, step: str, steps: dict):
    "`fn`, adding the seconds of each call to `steps[step]`."
    def timed(*a, **kw):
        t = time.perf_counter()
        try: return fn(*a, **kw)
        finally: steps[step] = steps.get(step, 0.0) + time.perf_counter() - t
    return timed


def run_splits(engine: str, record: dict, files: dict, strategy: str, run_dir: str, matcher: str = "time", group_column: str = "") -> dict:
    "The splits stage on `engine` over the version of `record`; seconds, memory and the run folder (to compare the stored splits)."
    os.environ.setdefault("THINKALIKE_PSEUDONYM_KEY", "bench-key")
    from thinkalike_ml import splits
    from thinkalike_ml.config import resolve_params
    from thinkalike_ml.data import DATASET_RECORD
    from thinkalike_ml.runs import RunDirectory
    params = resolve_params(overrides={"source": "files", "files": files, "engine": engine, "dask_partition_rows": bench_scale.PART_ROWS,
                                       "interaction_split": strategy, "matcher_split": matcher, "group_column": group_column})
    out, steps, cluster, held = {"engine": engine, "strategy": strategy, "matcher": matcher}, {}, None, {}
    if engine == "dask":
        from distributed import Client
        from thinkalike_ml.engine import local_cluster
        t = time.perf_counter()
        cluster = local_cluster()
        with Client(cluster) as c: c.run(lambda: __import__("thinkalike_ml.splits"))  # the workers' one-time imports
        out["cluster_start_s"] = time.perf_counter() - t
        params["dask_scheduler"] = cluster.scheduler_address
        inner = splits.interaction_splits_dask
        splits.interaction_splits_dask = lambda client, path, p, timings=None: inner(client, path, p, timings=steps)
        sugg = splits.suggestion_splits_dask
        def timed(client, path, p, timings=None):
            r = sugg(client, path, p, timings=steps)
            held.update(r["held"])
            return r
        splits.suggestion_splits_dask = timed
    else:  # the pandas engine's suggestion steps, to set beside the Dask function's
        for name in ("split_suggestions", "check_suggestion_splits", "user_overlap"):
            setattr(splits, name, _timed(getattr(splits, name), f"suggestions: {name}", steps))
    run = RunDirectory.create(params, run_dir)
    run.write_json(DATASET_RECORD, record)
    t = time.perf_counter()
    metrics = splits.run_splits_stage(run, params)
    out.update(stage_s=time.perf_counter() - t, steps=steps, client_peak_mib=_peak_mib(), run=str(run.path),
               interactions=int(record["row_counts"]["interactions"]), suggestions=int(record["row_counts"]["suggestions"]),
               evaluated_users=metrics.get("recommender_evaluated_users"), held=held)
    if cluster is not None:
        with Client(cluster) as c:
            out["worker_peak_mib"] = sorted(v / 1024 for v in c.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).values())
        cluster.close()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=float, default=[1, 10], help="multiples of the default size (5000 users, 300 items)")
    ap.add_argument("--items", type=int, default=300, help="communities at every size (0: 300 x the size), as in bench_scale.py")
    ap.add_argument("--strategies", nargs="+", default=["user_time", "user_random", "global_time"], choices=["global_time", "user_time", "user_random"])
    ap.add_argument("--matcher-splits", nargs="+", default=["time"], choices=["time", "stratified", "group", "users"])
    ap.add_argument("--engines", nargs="+", default=["pandas", "dask"], choices=["pandas", "dask"])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--arg", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        arg = json.loads(a.arg)
        fn = {"generate": bench_scale.generate, "version": make_version, "splits": run_splits, "events": add_events}[a.child]
        print(json.dumps(fn(*arg), default=str))
        return
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    def child(kind, arg):
        "Run one child process of this script; its result, with its process tree's memory peak (`bench_scale.run_in_child`)."
        return bench_scale.run_in_child([sys.executable, __file__, "--child", kind, "--arg", json.dumps(arg)], env, kind)

    import pandas as pd
    from thinkalike_ml.runs import RunDirectory
    from thinkalike_ml.splits import INTERACTION_SPLITS_TABLE, load_splits
    for scale in a.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-splits-") as folder:
            g = child("generate", [scale, f"{folder}/raw", a.items, "exact"])
            group = "event" if "group" in a.matcher_splits else ""
            if group: child("events", [g["files"]["suggestions"]])
            v = child("version", [g["files"], f"{folder}/store", f"{folder}/runs", group])
            layout = sorted(p.name for p in Path(v["record"]["path"]).iterdir())
            print(f"\n== {scale:g}x: {v['record']['row_counts']}; version by the Dask engine in {v['data_stage_s']:.1f} s ({', '.join(layout)}); "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
            for strategy, matcher in [(s, a.matcher_splits[0]) for s in a.strategies] + [(a.strategies[0], m) for m in a.matcher_splits[1:]]:
                got = {}
                for engine in a.engines:
                    load = os.getloadavg()[0]
                    try: r = child("splits", [engine, v["record"], g["files"], strategy, f"{folder}/runs", matcher, group])
                    except RuntimeError as e:
                        print(f"   {strategy} {engine}: {e}", flush=True)
                        continue
                    got[engine] = r
                    workers = (f", workers {' / '.join(f'{w:,.0f}' for w in r['worker_peak_mib'])} MiB" if "worker_peak_mib" in r else "")
                    start = f" (cluster start {r['cluster_start_s']:.1f} s, not included)" if "cluster_start_s" in r else ""
                    print(f"   {strategy:<11} {matcher:<10} {engine:<6} stage {r['stage_s']:7.1f} s{start}, {r['interactions'] / r['stage_s']:,.0f} interactions/s; "
                          f"peak memory: client {r['client_peak_mib']:,.0f} MiB{workers}, whole process tree {r['tree_peak_mib']:,.0f} MiB "
                          f"(load average {load:.1f} before, {os.getloadavg()[0]:.1f} after)", flush=True)
                    if r["steps"]: print("      " + "; ".join(f"{k} {s:.1f} s" for k, s in r["steps"].items()), flush=True)
                    if r["held"]: print(f"      suggestions: the client gathered {r['held']['client_bytes'] / r['held']['rows']:.1f} bytes a row "
                                        f"({r['held']['client_bytes'] / 2**20:,.0f} MiB) of the {r['held']['worker_bytes'] / r['held']['rows']:.1f} "
                                        f"the workers read ({r['held']['worker_bytes'] / 2**20:,.0f} MiB)", flush=True)
                if len(got) == 2:
                    a_run, b_run = (RunDirectory(Path(got[e]["run"])) for e in ("pandas", "dask"))
                    sa, sb = load_splits(a_run), load_splits(b_run)
                    same = all(sa[t].equals(sb[t]) and sa[t].dtypes.equals(sb[t].dtypes) for t in sa) and \
                           all(a_run.read_table(t).equals(b_run.read_table(t)) for t in (INTERACTION_SPLITS_TABLE, "tables/split_summary.parquet"))
                    print(f"   {strategy} / {matcher}: identical split tables, summary and comparison on both engines: {same} "
                          f"({', '.join(f'{t} {len(sa[t]):,}' for t in sa)} rows)", flush=True)
                    del sa, sb


if __name__ == "__main__":
    main()
