"""The models stage trained on everything against trained on a sample: seconds, peak memory, and the test metrics' difference.

Takes a run whose features stage has finished, for example the 10x size:

    .venv/bin/thinkalike-ml run -p n_users 50000 --until features --reports-dir /tmp/r10x
    .venv/bin/python bench/bench_train_sample.py /tmp/r10x/<run> --configs 0:0 50000:0 20000:10000

Each configuration `MATCHER_ROWS:RECOMMENDER_USERS` (the parameters `matcher_train_max_rows` and
`recommender_train_max_users`; 0 is everything) runs the models stage in its own process on a copy of the run
(tracked in the copy's own MLflow store), so every peak resident memory (ru_maxrss of the process) is that
configuration's alone. Validation and test are scored whole in every configuration. It prints, per configuration,
the stage's seconds, peak memory, the rows the matcher and the users the recommender trained on, the fits' and
searches' seconds, the test ROC AUC and NDCG, and their differences from the first configuration.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
SHOWN = ["matcher_train_rows_used", "matcher_train_rows_available", "recommender_train_users_used", "recommender_train_users_available",
         "matcher_logreg_search_seconds", "matcher_hgb_search_seconds", "matcher_logreg_fit_seconds", "matcher_hgb_fit_seconds",
         "matcher_logreg_fit_peak_mib", "matcher_hgb_fit_peak_mib", "matcher_test_roc_auc", "matcher_test_logreg_roc_auc",
         "matcher_test_hgb_roc_auc", "matcher_test_log_loss", "matcher_selected_is_hgb", "recommender_test_ndcg",
         "recommender_test_ease_ndcg", "recommender_test_item_knn_ndcg", "recommender_test_value_profile_ndcg",
         "recommender_test_trending_ndcg", "models_stage_seconds"]


def child(run_dir: str, matcher_rows: int, recommender_users: int) -> dict:
    """Run the models stage on `run_dir` with the two sampling parameters; its metrics, seconds and peak memory."""
    os.environ.setdefault("THINKALIKE_PSEUDONYM_KEY", "bench-key")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from thinkalike_ml.config import coerce
    from thinkalike_ml.runs import RunDirectory
    from thinkalike_ml.stages import execute_stage
    run = RunDirectory(run_dir)
    params = dict(run.params, dataset_store="", matcher_train_max_rows=coerce("matcher_train_max_rows", matcher_rows),
                  recommender_train_max_users=coerce("recommender_train_max_users", recommender_users))
    t, c = time.perf_counter(), time.process_time()
    m = execute_stage(run, "models", params)
    return {"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "metrics": {k: m[k] for k in SHOWN if k in m}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", help="a run directory whose features stage finished")
    ap.add_argument("--configs", nargs="+", default=["0:0", "50000:0", "20000:10000"],
                    help="MATCHER_ROWS:RECOMMENDER_USERS per configuration (0: everything); the first is the reference")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child[0], int(a.child[1]), int(a.child[2]))))
        return
    if not a.run: ap.error("give a run directory whose features stage finished")
    src = Path(a.run)
    if not (src / "artifacts" / "features").is_dir(): sys.exit(f"{src}: no features stage output (artifacts/features); run --until features first")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    results = []
    for conf in a.configs:
        rows, users = (int(x) for x in conf.split(":"))
        with tempfile.TemporaryDirectory(prefix="bench-train-sample-") as tmp:
            dst = Path(tmp) / src.name
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("mlruns", "models", "tracking.json", ".*.lock"))
            load = os.getloadavg()[0]
            r = subprocess.run([sys.executable, __file__, "--child", str(dst), str(rows), str(users)], env=env, capture_output=True, text=True)
            if r.returncode: sys.exit(f"configuration {conf} failed:\n{r.stderr[-3000:]}")
            res = json.loads(r.stdout.strip().splitlines()[-1]) | {"config": conf, "load_start": load, "load_end": os.getloadavg()[0]}
        results.append(res)
        m = res["metrics"]
        print(f"\n== matcher_train_max_rows={rows} recommender_train_max_users={users} (load average {res['load_start']:.1f} -> {res['load_end']:.1f})")
        print(f"   models stage {res['seconds']:.1f} s ({res.get('cpu_seconds', float('nan')):.1f} s of CPU), peak resident {res['peak_mib']:.0f} MiB")
        print(f"   matcher: {m.get('matcher_train_rows_used', 0):,.0f} of {m.get('matcher_train_rows_available', 0):,.0f} training pairs; "
              f"search logreg {m.get('matcher_logreg_search_seconds', 0):.1f} s, hgb {m.get('matcher_hgb_search_seconds', 0):.1f} s; "
              f"fit logreg {m.get('matcher_logreg_fit_seconds', 0):.2f} s ({m.get('matcher_logreg_fit_peak_mib', 0):.0f} MiB), "
              f"hgb {m.get('matcher_hgb_fit_seconds', 0):.2f} s ({m.get('matcher_hgb_fit_peak_mib', 0):.0f} MiB)")
        print(f"   recommender: {m.get('recommender_train_users_used', 0):,.0f} of {m.get('recommender_train_users_available', 0):,.0f} users")
        ref = results[0]["metrics"]
        for k in ("matcher_test_roc_auc", "matcher_test_logreg_roc_auc", "matcher_test_hgb_roc_auc", "matcher_test_log_loss",
                  "recommender_test_ndcg", "recommender_test_ease_ndcg", "recommender_test_item_knn_ndcg", "recommender_test_value_profile_ndcg"):
            if k in m: print(f"   {k:38s} {m[k]:.4f}  (difference from {results[0]['config']}: {m[k] - ref.get(k, float('nan')):+.4f})")
    print("\n" + json.dumps(results))


if __name__ == "__main__":
    main()
