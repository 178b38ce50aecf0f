"""The data stage, pair features and batch scoring on the pandas and the Dask engine at growing sizes, with the scaling exponent.

With `--source files` (the default), per size, the generator's raw tables are made once (in pandas, in their own process)
and written as Parquet datasets (a folder of part files per table), then read back as the user's own files
(`source: files`) by each engine in its own process. With `--source synthetic` each engine generates the data itself
(step "generate"): pandas in its one process, dask on its workers (`engine.assemble_interactions_dask`: the interactions
never pass through the client). `--library DIR` runs the children on another copy of the library (for example
`git archive <commit> thinkalike_ml | tar -x -C DIR`), to compare a change with the code before it.

- pandas: read, conform, consent, pseudonymize, quality checks, finalize and hash, one process;
- dask: the same steps on a local cluster of 2 single-threaded worker processes (`thinkalike_ml.engine`); the cluster's
  start includes the workers' one-time imports. The final tables stay on the workers: they write the dataset version
  themselves (step "write version": a folder of Parquet parts per big table, manifest and datasheet from partition
  summaries, as `data.run_data_stage` does; with `--source synthetic`, step "truth and oracle": the oracle AUCs and the
  ground truth's writing, as `data.run_data_stage` does next), and the pair features, the sample and the scores are computed on the
  partitions too, so the client holds summaries, one partition's column (hash) and the training sample;
- then, on the cleaned tables, pair features of every suggestion, and batch scoring of every pair with a logistic
  matcher fitted on a stratified sample of at most --train-sample pairs (what trains on a sample is said in the output;
  pandas draws it with train_test_split over the whole table, dask per partition with the same share of each class, so
  above --train-sample pairs the two matchers, and their score sums, differ).

For each engine and step it prints seconds, CPU seconds (the client's and the workers', from each process's own
getrusage at the step's end), peak resident memory per process (the client, and for dask each worker: ru_maxrss) and
throughput (rows per second). A sampler in the parent reads, every second, the resident memory and the CPU times
(psutil) of every process of the child's tree (client, worker processes): the tree's peak memory, and each process's CPU
seconds. It fits the scaling exponent b of time ~ rows^b over the sizes, on wall time and on CPU time (which the load
of other processes on the machine distorts much less).

    .venv/bin/python bench/bench_scale.py --sizes 1 10          # minutes on a busy 2-core machine
    .venv/bin/python bench/bench_scale.py --sizes 1 10 100      # 100x: 500k users, ~10M interactions
    .venv/bin/python bench/bench_scale.py --sizes 1 10 100 --items 300   # the same rows with 300 communities at every size
    .venv/bin/python bench/bench_scale.py --sizes 10 100 --items 300 --source synthetic --engines dask --data-only
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
DEFAULT = dict(n_users=5000, n_items=300)
PART_ROWS = 250_000  # rows per Parquet part file and per Dask partition


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _cpu_s() -> float:
    "This process's CPU seconds so far (user + system, all threads)."
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Steps(dict):
    """Step -> seconds, filled by the engine (`timings`) or by the bench; each time a step's seconds are set, the CPU seconds
    each process spent since the previous step are added to that step (`cpu[step]`: {'client': s, 'workers': s})."""
    def __init__(self, snapshot):
        super().__init__()
        self.snapshot, self.cpu = snapshot, {}
        self.last = snapshot()
    def __setitem__(self, step, seconds):
        super().__setitem__(step, seconds)
        now = self.snapshot()
        d = {k: now[k] - self.last.get(k, 0.0) for k in now}
        c = self.cpu.setdefault(step, {"client": 0.0, "workers": 0.0})
        c["client"] += d.pop("client")
        c["workers"] += sum(d.values())
        self.last = now


def generate(scale: float, folder: str, items: int = 0, sampler: str = "exact") -> dict:
    """Generate the raw tables at `scale` x the default size (`items` communities if given, interactions drawn by `sampler`) and write
    each as a folder of Parquet parts."""
    os.environ.setdefault("THINKALIKE_PSEUDONYM_KEY", "bench-key")
    from thinkalike_ml import data as D
    from thinkalike_ml.config import resolve_params
    params = resolve_params(overrides={"n_users": int(DEFAULT["n_users"] * scale), "n_items": items or int(DEFAULT["n_items"] * scale),
                                              "interaction_sampler": sampler})
    t = time.perf_counter()
    raw, _ = D.collect_raw(params)
    seconds = time.perf_counter() - t
    files = {}
    for name, df in raw.items():
        df = df.drop(columns=[c for c in D.IDENTIFIER_COLUMNS if c in df.columns])
        out = Path(folder)/name
        out.mkdir(parents=True)
        for k, i in enumerate(range(0, len(df), PART_ROWS)):
            df.iloc[i:i + PART_ROWS].to_parquet(out/f"part-{k:05d}.parquet", index=False)
        files[name] = str(out)
    return {"generate_s": seconds, "generate_peak_mib": _peak_mib(), "rows": {k: len(v) for k, v in raw.items()}, "files": files}


def _sample_fit(table, cols, n, seed=0):
    """A logistic matcher fitted on a stratified sample of at most `n` pairs (the sample is what fits in memory)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    sample = table if len(table) <= n else train_test_split(table, train_size=n, stratify=table["accepted"], random_state=seed)[0]
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(sample[cols].fillna(0.0), sample["accepted"]), len(sample)


def _warm():
    import sklearn.linear_model  # noqa: F401
    import thinkalike_ml.engine, thinkalike_ml.features  # noqa: F401,E401


def _score_block(model, X):
    return model.predict_proba(X)[:, 1]


def _profile(users):
    from thinkalike_ml.features import value_categories
    cats = value_categories(users)
    prof = [f"value_importance_{c}" for c in cats] + [f"value_position_{c}" for c in cats]
    return {k: float(v) for k, v in users[prof].median().fillna(0.0).items()}


def _concat_parts(parts):
    import pandas as pd
    return pd.concat(parts, ignore_index=True)


def _features_part(users, pairs, medians):
    from thinkalike_ml.engine import _pair_block
    return _pair_block(users, pairs, medians, {}).assign(accepted=pairs["accepted"].to_numpy())


def _sample_part(table, share, seed):
    """Rows of one partition of pair features: the same share of each class (all rows when share >= 1), seeded per partition."""
    import numpy as np
    if share >= 1: return table
    rng = np.random.default_rng(seed)
    keep = np.concatenate([rng.choice(np.flatnonzero(table["accepted"].to_numpy() == v), int(round(share * k)), replace=False)
                           for v, k in table["accepted"].value_counts().sort_index().items()])
    return table.iloc[np.sort(keep)]


def _score_sum(table, model, cols):
    return float(_score_block(model, table[cols].fillna(0.0).to_numpy()).sum())


def _raw_rows(quality) -> int:
    "The raw rows of all tables, from the quality table's 'schema and types' checks (one per table, on every row read)."
    return int(quality.loc[quality["rule"] == "schema and types", "rows"].sum())


def run_engine(engine: str, source: dict, train_sample: int, data_only: bool = False) -> dict:
    """The data stage on `engine` (source: {'files': ...} the Parquet datasets, or {'synthetic': overrides} the generator's
    parameters), then pair features and scoring unless `data_only`; seconds, CPU seconds and memory per step."""
    os.environ.setdefault("THINKALIKE_PSEUDONYM_KEY", "bench-key")
    import numpy as np
    from thinkalike_ml import data as D
    from thinkalike_ml.config import resolve_params
    from thinkalike_ml.features import pair_features, value_categories
    synthetic = "synthetic" in source
    over = {"source": "synthetic", **source["synthetic"]} if synthetic else {"source": "files", "files": source["files"]}
    params = resolve_params(overrides={**over, "engine": engine, "dask_partition_rows": PART_ROWS})
    key, out = D.dataset_pseudonym_key(params), {"engine": engine, "source": params["source"], "library": D.__file__}
    cluster = client = None
    if engine == "dask":
        from distributed import Client, wait
        from thinkalike_ml.engine import build_dataset_dask, local_cluster
        t = time.perf_counter()
        cluster = local_cluster()  # the data stage's own local cluster: 2 single-threaded workers, each with its share of the memory
        client = Client(cluster)
        client.run(_warm)  # the workers' one-time imports, counted with the cluster's start, not with the first step
        steps = _Steps(lambda: {"client": _cpu_s(), **client.run(_cpu_s)})
        steps["cluster start"] = time.perf_counter() - t
        params["dask_scheduler"] = cluster.scheduler_address
        built = build_dataset_dask(params, key, timings=steps, client=client)
        out["raw_rows"] = _raw_rows(built["quality"])
        steps.pop("cluster", None)
        steps.cpu.pop("cluster", None)
        t = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bench-store-") as store:
            v = D.version_dataset(Path(store), built, params)
            steps["write version"] = time.perf_counter() - t
            out["version_layout"] = sorted(p.name for p in Path(v["path"]).iterdir())
        tables = built["tables"]
        out["hash"], out["rows"] = built["hash"], {n: s["rows"] for n, s in v["summaries"].items()}
        if built.get("truth") is not None:  # the rest of `data.run_data_stage` on the synthetic source: the oracle AUCs, the truth's writing
            from thinkalike_ml.runs import RunDirectory
            t = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
                out["oracle"] = D._oracle_metrics(tables, built["truth"], *([built["oracle_scores"]] if "oracle_scores" in built else []))
                D._write_truth(RunDirectory.create(params, tmp), built["truth"])
            steps["truth and oracle"] = time.perf_counter() - t
        users, pairs = tables["users"], tables["suggestions"]
        out["client_peak_after_data_mib"] = _peak_mib()
        if data_only:
            out.update(steps=dict(steps), cpu=steps.cpu, fit_rows=0, pairs=len(pairs), client_peak_mib=_peak_mib(), score_checksum=None)
            out["worker_peak_mib"] = sorted(v / 1024 for v in client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).values())
            out["worker_memory_limit_mib"] = [w["memory_limit"] / 2**20 for w in client.scheduler_info()["workers"].values()]
            client.close()
            cluster.close()
            return out
        t = time.perf_counter()
        users_all = client.submit(_concat_parts, users.futures)  # the profiles on a worker, never in the client
        medians = client.submit(_profile, users_all).result()
        feats = client.map(_features_part, [users_all] * len(pairs.futures), pairs.futures, [medians] * len(pairs.futures))
        wait(feats)
        steps["pair features"] = time.perf_counter() - t
        n_pairs = sum(client.gather(client.map(len, feats)))
        cols = [c for c in client.submit(lambda d: list(d.columns), feats[0]).result() if c != "accepted"]
        t = time.perf_counter()
        share = train_sample / n_pairs if n_pairs > train_sample else 1.0
        import pandas as pd
        sample = pd.concat(client.gather(client.map(_sample_part, feats, [share] * len(feats), list(range(len(feats))))), ignore_index=True)
        model, n_fit = _sample_fit(sample, cols, len(sample))
        steps["fit on sample"] = time.perf_counter() - t
        t = time.perf_counter()
        m = client.scatter(model, broadcast=True)
        total = sum(client.gather(client.map(_score_sum, feats, [m] * len(feats), [cols] * len(feats))))
        steps["score all pairs"] = time.perf_counter() - t
        out["score_checksum"] = float(np.round(total, 6))
        out.update(steps=dict(steps), cpu=steps.cpu, fit_rows=n_fit, pairs=n_pairs, client_peak_mib=_peak_mib())
        out["worker_peak_mib"] = sorted(v / 1024 for v in client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).values())
        out["worker_memory_limit_mib"] = [w["memory_limit"] / 2**20 for w in client.scheduler_info()["workers"].values()]
        client.close()
        cluster.close()
        return out
    else:
        steps = _Steps(lambda: {"client": _cpu_s()})
        t = time.perf_counter()
        if synthetic:
            raw, _ = D.collect_raw(params)
            steps["generate"] = time.perf_counter() - t; t = time.perf_counter()
        else: raw = D.read_files(source["files"])
        out["raw_rows"] = sum(len(df) for df in raw.values())
        conformed = {n: D.conform(n, df)[0] for n, df in raw.items()}
        del raw
        steps["read and conform"] = time.perf_counter() - t; t = time.perf_counter()
        consented, consent = D.apply_consent(conformed, set(), key)
        private = D.apply_privacy(consented, key)
        steps["consent and pseudonymize"] = time.perf_counter() - t; t = time.perf_counter()
        cleaned, quality = D.check_quality(private)
        steps["quality checks"] = time.perf_counter() - t; t = time.perf_counter()
        tables = D.finalize(cleaned)
        steps["finalize and sort"] = time.perf_counter() - t; t = time.perf_counter()
        built = {"tables": tables, "hash": D.dataset_hash(tables)}
        steps["hash"] = time.perf_counter() - t
    tables = built["tables"]
    out["hash"], out["rows"] = built["hash"], {n: len(df) for n, df in tables.items()}
    users, pairs = tables["users"], tables["suggestions"]
    out["client_peak_after_data_mib"] = _peak_mib()
    if data_only:
        out.update(steps=dict(steps), cpu=steps.cpu, fit_rows=0, pairs=len(pairs), client_peak_mib=_peak_mib(), score_checksum=None)
        return out
    cats = value_categories(users)
    prof = [f"value_importance_{c}" for c in cats] + [f"value_position_{c}" for c in cats]
    medians = {k: float(v) for k, v in users[prof].median().fillna(0.0).items()}
    t = time.perf_counter()
    feats = pair_features(users, pairs, medians=medians)
    steps["pair features"] = time.perf_counter() - t
    table = feats.assign(accepted=pairs["accepted"].to_numpy())
    cols = list(feats.columns)
    t = time.perf_counter()
    model, n_fit = _sample_fit(table, cols, train_sample)
    steps["fit on sample"] = time.perf_counter() - t
    X = table[cols].fillna(0.0).to_numpy()
    t = time.perf_counter()
    p = np.concatenate([_score_block(model, X[i:i + PART_ROWS]) for i in range(0, len(X), PART_ROWS)])
    steps["score all pairs"] = time.perf_counter() - t
    out["score_checksum"] = float(np.round(p.sum(), 6))
    out.update(steps=dict(steps), cpu=steps.cpu, fit_rows=n_fit, pairs=len(pairs), client_peak_mib=_peak_mib())
    return out


ROWS_OF = {"pair features": "pairs", "fit on sample": "fit", "score all pairs": "pairs"}  # other steps: all rows of the data stage
NOT_IN_TOTAL = ("cluster start", "write version", "truth and oracle")  # the data stage total compares the engines' common steps (pandas writes no version or truth here)


def _rows(r: dict, step: str) -> int:
    if ROWS_OF.get(step) == "pairs": return r["pairs"]
    if ROWS_OF.get(step) == "fit": return r["fit_rows"]
    return r["raw_rows"]


def _data_steps(r: dict) -> list[str]:
    return [k for k in r["steps"] if k not in ROWS_OF and k not in NOT_IN_TOTAL]


def _cpu(r: dict, step: str) -> float:
    "CPU seconds of a step, or of the data stage total, in all processes (client + workers); nan when not recorded."
    c = r.get("cpu") or {}
    steps = _data_steps(r) if step == "data stage total" else [step]
    if not all(s in c for s in steps): return float("nan")
    return sum(c[s]["client"] + c[s]["workers"] for s in steps)


def _variant(r: dict) -> str:
    return f"{r['engine']}, {r.get('source', 'files')}" + (f", {r['label']}" if r.get("label") else "")


def run_in_child(cmd: list, env: dict, kind: str) -> dict:
    """Run `cmd` (a child that prints its result as JSON on its last line); the result, with the peak of the summed resident
    memory of its whole process tree (the client, the workers and their nannies) and each process's CPU seconds, sampled
    every second."""
    import threading
    import psutil
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        peak, cpu, done = [0], {}, threading.Event()
        def watch():
            root = psutil.Process(p.pid)
            while not done.wait(1.0):
                try: procs = [root] + root.children(recursive=True)
                except psutil.Error: continue
                rss = 0
                for q in procs:
                    try:
                        with q.oneshot():
                            rss += q.memory_info().rss
                            t = q.cpu_times()
                            role = "client" if q.pid == p.pid else ("worker" if "spawn_main" in " ".join(q.cmdline()) else q.name())
                        cpu[q.pid] = (role, t.user + t.system)
                    except psutil.Error: pass
                peak[0] = max(peak[0], rss)
        th = threading.Thread(target=watch, daemon=True)
        th.start()
        code = p.wait()
        done.set()
        th.join()
        out.seek(0); err.seek(0)
        if code: raise RuntimeError(f"{kind} failed (process tree peak {peak[0] / 2**20:,.0f} MiB):\n{err.read()[-3000:]}")
        r = json.loads(out.read().strip().splitlines()[-1]) or {}
    r["tree_peak_mib"] = peak[0] / 2**20
    r["tree_cpu_s"] = [{"pid": pid, "role": role, "cpu_s": round(s, 2)} for pid, (role, s) in sorted(cpu.items())]
    return r

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=float, default=[1, 10], help="multiples of the default size (5000 users, 300 items)")
    ap.add_argument("--engines", nargs="+", default=["pandas", "dask"], choices=["pandas", "dask"])
    ap.add_argument("--items", type=int, default=0,
                    help="communities at every size (0: 300 x the size). The generator's draws cost users x communities, so at 100x "
                         "and beyond a fixed number keeps generation linear; the engines' steps depend on rows, not on communities")
    ap.add_argument("--sampler", default="exact", choices=["exact", "tree"],
                    help="the generator's interaction sampler (parameter interaction_sampler): 'exact' costs users x communities, "
                         "'tree' grows with interactions")
    ap.add_argument("--source", default="files", choices=["files", "synthetic"],
                    help="files: generate once in a process of its own, then each engine reads the Parquet files; synthetic: each "
                         "engine generates the data itself (dask: on its workers)")
    ap.add_argument("--library", help="a folder holding another copy of the thinkalike_ml package, imported by the children instead "
                                      "of this checkout's (e.g. `git archive <commit> thinkalike_ml | tar -x -C DIR`)")
    ap.add_argument("--label", default="", help="a name for this variant in the results and fits (e.g. 'before', 'after')")
    ap.add_argument("--data-only", action="store_true", help="stop after the data stage (and, for dask, the version's writing)")
    ap.add_argument("--train-sample", type=int, default=50_000, help="most pairs the matcher is fitted on (stratified sample)")
    ap.add_argument("--results", help="a JSON-lines file: each engine's result per size is appended to it, and the exponents are fitted "
                                      "over every result in it (so sizes run in several invocations on the same machine fit together)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--arg", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child == "generate":
        scale, folder, items, sampler = json.loads(a.arg)
        print(json.dumps(generate(scale, folder, items, sampler)))
        return
    if a.child:
        print(json.dumps(run_engine(a.child, json.loads(a.arg), a.train_sample, a.data_only)))
        return
    root = Path(__file__).resolve().parents[1]
    lib = str(Path(a.library).resolve()) if a.library else str(root)
    env = {**os.environ, "PYTHONPATH": f"{lib}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    def child(kind, arg):
        "Run one child process of this script; its result, with its process tree's memory peak and CPU (`run_in_child`)."
        cmd = [sys.executable, __file__, "--child", kind, "--arg", json.dumps(arg), "--train-sample", str(a.train_sample)]
        return run_in_child(cmd + (["--data-only"] if a.data_only else []), env, kind)
    results = []
    for scale in a.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
            load = os.getloadavg()[0]
            overrides = {"n_users": int(DEFAULT["n_users"] * scale), "n_items": a.items or int(DEFAULT["n_items"] * scale),
                         "interaction_sampler": a.sampler}
            if a.source == "files":
                g = child("generate", [scale, folder, a.items, a.sampler])
                raw_rows = sum(g["rows"].values())
                print(f"\n== {scale:g}x: {g['rows']} raw rows ({raw_rows:,}); generated in pandas ({a.sampler} sampler) in {g['generate_s']:.1f} s, "
                      f"peak {g['generate_peak_mib']:.0f} MiB; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} after generating", flush=True)
                source = {"files": g["files"]}
            else:
                print(f"\n== {scale:g}x: {overrides}, generated by each engine ({a.sampler} sampler); load average {load:.1f}", flush=True)
                source = {"synthetic": overrides}
            by_engine = {}
            for engine in a.engines:
                load_before = os.getloadavg()[0]
                try: r = child(engine, source)
                except RuntimeError as e:
                    print(f"   {engine}: {e}", flush=True)
                    continue
                if a.source == "files": r["raw_rows"] = raw_rows
                r.update(scale=scale, sampler=a.sampler, items=a.items, label=a.label, load_before=load_before, load_after=os.getloadavg()[0])
                by_engine[engine] = r
                results.append(r)
                if a.results:
                    with open(a.results, "a", encoding="utf-8") as f: f.write(json.dumps(r) + "\n")
                workers = f", workers {' / '.join(f'{w:.0f}' for w in r['worker_peak_mib'])} MiB" if "worker_peak_mib" in r else ""
                procs = ", ".join(f"{q['role']} {q['cpu_s']:.1f}" for q in r["tree_cpu_s"] if q["cpu_s"] >= 0.5)
                print(f"   {_variant(r)} ({r['library']}; load average {load_before:.1f} before, {r['load_after']:.1f} after): "
                      f"{r['raw_rows']:,} raw rows, total {sum(r['steps'].values()):.1f} s; peak memory: client {r['client_peak_mib']:.0f} MiB "
                      f"({r['client_peak_after_data_mib']:.0f} MiB after the data stage){workers}, whole process tree {r['tree_peak_mib']:,.0f} MiB; "
                      f"CPU seconds sampled per process: {procs}" + (f"; matcher fitted on {r['fit_rows']:,} of {r['pairs']:,} pairs" if r["fit_rows"] else ""), flush=True)
                for step, s in r["steps"].items():
                    n, c = _rows(r, step), (r.get("cpu") or {}).get(step)
                    cs = f"   CPU client {c['client']:8.2f} s, workers {c['workers']:8.2f} s" if c else ""
                    print(f"      {step:<26} {s:9.2f} s  {n / s if s > 0 else float('nan'):>12,.0f} rows/s{cs}", flush=True)
            if len(by_engine) == 2:
                same = by_engine["pandas"]["hash"] == by_engine["dask"]["hash"]
                sp, sd = by_engine["pandas"]["score_checksum"], by_engine["dask"]["score_checksum"]
                print(f"   same dataset hash on both engines: {same}" + (f"; same scores: {abs(sp - sd) < 1e-6}" if sp is not None and sd is not None else ""), flush=True)
    import numpy as np
    if a.results:
        results = [json.loads(line) for line in Path(a.results).read_text(encoding="utf-8").splitlines() if line.strip()]
        print(f"\nfitted over the {len(results)} results in {a.results} (sizes {sorted({r['scale'] for r in results})})")
    fit = lambda xs, ys: np.polyfit(np.log(xs), np.log(ys), 1)[0]
    variants = sorted({_variant(r) for r in results})
    if len({r["scale"] for r in results}) >= 2:
        print("\nscaling exponent b (time ~ rows^b, least squares over the sizes; 1 = linear), on wall time and on CPU time "
              "(client + workers, each process's getrusage; 'tree' = all processes of the tree as sampled by psutil):")
        for v in variants:
            rs = [r for r in results if _variant(r) == v]
            if len({r["scale"] for r in rs}) < 2: continue
            steps = [s for s in rs[0]["steps"] if all(s in r["steps"] for r in rs) and s != "fit on sample"]  # the sample's size is capped
            for step in steps + ["data stage total"]:
                xs = [_rows(r, step if step != "data stage total" else "") for r in rs]
                ys = [sum(r["steps"][k] for k in _data_steps(r)) if step == "data stage total" else r["steps"][step] for r in rs]
                cs = [_cpu(r, step) for r in rs]
                if min(ys) <= 0 or len(set(xs)) < 2: continue
                cpu_b = f"   CPU b = {fit(xs, cs):.2f}" if all(c > 0 for c in cs) else ""
                print(f"   {v:<28} {step:<26} wall b = {fit(xs, ys):.2f}{cpu_b}")
            tree = [sum(q["cpu_s"] for q in r.get("tree_cpu_s", [])) for r in rs]
            if all(t > 0 for t in tree):
                print(f"   {v:<28} {'whole run, process tree':<26} CPU b = {fit([r['raw_rows'] for r in rs], tree):.2f}")


if __name__ == "__main__":
    main()
