"""The data stage, pair features and batch scoring on the pandas and the Dask engine at growing sizes, with the scaling exponent.

Per size, the generator's raw tables are made once (in pandas, in their own process; the Dask engine can generate too,
see `engine.map_blocks_dask`, but here both engines read the same files)
and written as Parquet datasets (a folder of part files per table), then read back as the user's own files
(`source: files`) by each engine in its own process:

- pandas: read, conform, consent, pseudonymize, quality checks, finalize and hash, one process;
- dask: the same steps on a local cluster of 2 single-threaded worker processes (`thinkalike_ml.engine`); the cluster's
  start includes the workers' one-time imports. The final tables stay on the workers: they write the dataset version
  themselves (step "write version": a folder of Parquet parts per big table, manifest and datasheet from partition
  summaries, as `data.run_data_stage` does), and the pair features, the sample and the scores are computed on the
  partitions too, so the client holds summaries, one partition's column (hash) and the training sample;
- then, on the cleaned tables, pair features of every suggestion, and batch scoring of every pair with a logistic
  matcher fitted on a stratified sample of at most --train-sample pairs (what trains on a sample is said in the output;
  pandas draws it with train_test_split over the whole table, dask per partition with the same share of each class, so
  above --train-sample pairs the two matchers, and their score sums, differ).

For each engine and step it prints seconds, peak resident memory per process (the client, and for dask each worker:
ru_maxrss) and throughput (rows per second), and fits the scaling exponent b of time ~ rows^b over the sizes.

    .venv/bin/python bench/bench_scale.py --sizes 1 10          # minutes on a busy 2-core machine
    .venv/bin/python bench/bench_scale.py --sizes 1 10 100      # 100x: 500k users, ~10M interactions
    .venv/bin/python bench/bench_scale.py --sizes 1 10 100 --items 300   # the same rows with 300 communities at every size
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


def run_engine(engine: str, files: dict, train_sample: int) -> dict:
    """The data stage on `engine` over the Parquet datasets, then pair features and scoring; seconds and memory per step."""
    os.environ.setdefault("THINKALIKE_PSEUDONYM_KEY", "bench-key")
    import numpy as np
    from thinkalike_ml import data as D
    from thinkalike_ml.config import resolve_params
    from thinkalike_ml.features import pair_features, value_categories
    params = resolve_params(overrides={"source": "files", "files": files, "engine": engine, "dask_partition_rows": PART_ROWS})
    key, steps, out = D.pseudonym_key(), {}, {"engine": engine}
    cluster = client = None
    if engine == "dask":
        from distributed import Client, wait
        from thinkalike_ml.engine import build_dataset_dask, local_cluster
        t = time.perf_counter()
        cluster = local_cluster()  # the data stage's own local cluster: 2 single-threaded workers, each with its share of the memory
        client = Client(cluster)
        client.run(_warm)  # the workers' one-time imports, counted with the cluster's start, not with the first step
        steps["cluster start"] = time.perf_counter() - t
        params["dask_scheduler"] = cluster.scheduler_address
        built = build_dataset_dask(params, key, timings=steps, client=client)
        steps.pop("cluster", None)
        t = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bench-store-") as store:
            v = D.version_dataset(Path(store), built, params)
            steps["write version"] = time.perf_counter() - t
            out["version_layout"] = sorted(p.name for p in Path(v["path"]).iterdir())
        tables = built["tables"]
        out["hash"], out["rows"] = built["hash"], {n: s["rows"] for n, s in v["summaries"].items()}
        users, pairs = tables["users"], tables["suggestions"]
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
        out.update(steps=steps, fit_rows=n_fit, pairs=n_pairs, client_peak_mib=_peak_mib())
        out["worker_peak_mib"] = sorted(v / 1024 for v in client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).values())
        out["worker_memory_limit_mib"] = [w["memory_limit"] / 2**20 for w in client.scheduler_info()["workers"].values()]
        client.close()
        cluster.close()
        return out
    else:
        t = time.perf_counter()
        raw = D.read_files(files)
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
    out.update(steps=steps, fit_rows=n_fit, pairs=len(pairs), client_peak_mib=_peak_mib())
    return out


ROWS_OF = {"pair features": "pairs", "fit on sample": "fit", "score all pairs": "pairs"}  # other steps: all rows of the data stage
NOT_IN_TOTAL = ("cluster start", "write version")  # the data stage total compares the engines' common steps (pandas writes no version here)


def _rows(r: dict, step: str) -> int:
    if ROWS_OF.get(step) == "pairs": return r["pairs"]
    if ROWS_OF.get(step) == "fit": return r["fit_rows"]
    return r["raw_rows"]


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
        print(json.dumps(run_engine(a.child, json.loads(a.arg), a.train_sample)))
        return
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    def child(kind, arg):
        """Run one child process; its result, with the peak of the summed resident memory of its whole process tree (the client, the
        workers and their nannies), sampled every second."""
        import threading
        import psutil
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            p = subprocess.Popen([sys.executable, __file__, "--child", kind, "--arg", json.dumps(arg), "--train-sample", str(a.train_sample)],
                                 env=env, stdout=out, stderr=err, text=True)
            peak, done = [0], threading.Event()
            def watch():
                root = psutil.Process(p.pid)
                while not done.wait(1.0):
                    try: procs = [root] + root.children(recursive=True)
                    except psutil.Error: continue
                    rss = 0
                    for q in procs:
                        try: rss += q.memory_info().rss
                        except psutil.Error: pass
                    peak[0] = max(peak[0], rss)
            th = threading.Thread(target=watch, daemon=True)
            th.start()
            code = p.wait()
            done.set()
            th.join()
            out.seek(0); err.seek(0)
            if code: raise RuntimeError(f"{kind} failed (process tree peak {peak[0] / 2**20:,.0f} MiB):\n{err.read()[-3000:]}")
            r = json.loads(out.read().strip().splitlines()[-1])
        r["tree_peak_mib"] = peak[0] / 2**20
        return r
    results = []
    for scale in a.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
            load = os.getloadavg()[0]
            g = child("generate", [scale, folder, a.items, a.sampler])
            raw_rows = sum(g["rows"].values())
            print(f"\n== {scale:g}x: {g['rows']} raw rows ({raw_rows:,}); generated in pandas ({a.sampler} sampler) in {g['generate_s']:.1f} s, "
                  f"peak {g['generate_peak_mib']:.0f} MiB; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} after generating", flush=True)
            by_engine = {}
            for engine in a.engines:
                load_before = os.getloadavg()[0]
                try: r = child(engine, g["files"])
                except RuntimeError as e:
                    print(f"   {engine}: {e}", flush=True)
                    continue
                r.update(scale=scale, raw_rows=raw_rows, sampler=a.sampler, items=a.items, load_before=load_before, load_after=os.getloadavg()[0])
                by_engine[engine] = r
                results.append(r)
                if a.results:
                    with open(a.results, "a", encoding="utf-8") as f: f.write(json.dumps(r) + "\n")
                workers = f", workers {' / '.join(f'{w:.0f}' for w in r['worker_peak_mib'])} MiB" if "worker_peak_mib" in r else ""
                print(f"   {engine} (load average {load_before:.1f} before, {r['load_after']:.1f} after): total {sum(r['steps'].values()):.1f} s; peak memory: client {r['client_peak_mib']:.0f} MiB{workers}, "
                      f"whole process tree {r['tree_peak_mib']:,.0f} MiB; "
                      f"matcher fitted on {r['fit_rows']:,} of {r['pairs']:,} pairs", flush=True)
                for step, s in r["steps"].items():
                    n = _rows(r, step)
                    print(f"      {step:<26} {s:9.2f} s  {n / s if s > 0 else float('nan'):>12,.0f} rows/s", flush=True)
            if len(by_engine) == 2:
                same = by_engine["pandas"]["hash"] == by_engine["dask"]["hash"]
                close = abs(by_engine["pandas"]["score_checksum"] - by_engine["dask"]["score_checksum"]) < 1e-6
                print(f"   same dataset hash on both engines: {same}; same scores: {close}", flush=True)
    import numpy as np
    if a.results:
        results = [json.loads(line) for line in Path(a.results).read_text(encoding="utf-8").splitlines() if line.strip()]
        print(f"\nfitted over the {len(results)} results in {a.results} (sizes {sorted({r['scale'] for r in results})})")
    if len({r["scale"] for r in results}) >= 2:
        print("\nscaling exponent b (time ~ rows^b, least squares over the sizes; 1 = linear):")
        for engine in a.engines:
            rs = [r for r in results if r["engine"] == engine]
            if len(rs) < 2: continue
            steps = [s for s in rs[0]["steps"] if all(s in r["steps"] for r in rs) and s != "fit on sample"]  # the sample's size is capped
            for step in steps + ["data stage total"]:
                xs = [_rows(r, step if step != "data stage total" else "") for r in rs]
                ys = [sum(v for k, v in r["steps"].items() if k not in ROWS_OF and k not in NOT_IN_TOTAL) if step == "data stage total"
                      else r["steps"][step] for r in rs]
                if min(ys) <= 0 or len(set(xs)) < 2: continue
                b = np.polyfit(np.log(xs), np.log(ys), 1)[0]
                print(f"   {engine:<7} {step:<26} b = {b:.2f}")


if __name__ == "__main__":
    main()
