"""The recommender on a long-history file set under each `interaction_split`: how many users its test metrics are averaged
over, the selected model's and most-popular's test NDCG@k with their bootstrap 95% intervals (the evaluation stage's), and
how far training reaches past the test rows. Prints a table; asserts nothing.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_interaction_splits.py [--n-users 1000] [--activity-days 7] [--n-trials 5]

The long-history set is the generator's users, items and interactions with each user active for about `activity-days`
days after signup (lognormal), exported to CSV files and read back through the files path (`source: files`), like a public
ratings log whose users come and go over the years. Each strategy runs the stages' own runners: data, splits, features,
models (tuning on the strategy's folds) and evaluation; 'auto' is run too, to show what it picks and why.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("THINKALIKE_PSEUDONYM_KEY", "bench-interaction-splits")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from thinkalike_ml.config import resolve_params  # noqa: E402
from thinkalike_ml.data import export_data  # noqa: E402
from thinkalike_ml.evaluation import load_evaluation  # noqa: E402
from thinkalike_ml.runs import RunDirectory  # noqa: E402
from thinkalike_ml.stages import execute_stage  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-users", type=int, default=1000)
    ap.add_argument("--n-items", type=int, default=40)
    ap.add_argument("--activity-days", type=float, default=7.0)
    ap.add_argument("--interactions-per-user", type=float, default=10.0)
    ap.add_argument("--n-trials", type=int, default=5)
    ap.add_argument("--n-bootstrap", type=int, default=1000)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        gen = dict(n_users=a.n_users, n_items=a.n_items, activity_days=a.activity_days, interactions_per_user=a.interactions_per_user)
        files = export_data(resolve_params(overrides=gen), Path(root)/"files", ["users", "items", "interactions"])["files"]
        print(f"# long-history files: {gen}; {a.n_trials} Optuna trials, {a.n_bootstrap} bootstrap resamples", flush=True)
        rows, k = [], None
        for strategy in ("auto", "global_time", "user_time", "user_random"):
            params = resolve_params(overrides=dict(source="files", files=files, dataset_store="", interaction_split=strategy,
                                                   n_trials=a.n_trials, n_bootstrap=a.n_bootstrap))
            k = params["top_k"]
            run = RunDirectory.create(params, Path(root)/strategy)
            for s in ("data", "splits", "features", "models", "evaluation"): execute_stage(run, s)
            info = run.read_json("artifacts/splits/splits.json")
            ev = load_evaluation(run)
            m = ev["metrics"].set_index(["model", "metric"])
            sel = ev["summary"]["selected"]["recommender"]
            cell = lambda model: "{:.4f} [{:.4f}, {:.4f}]".format(*m.loc[(model, "ndcg"), ["value", "ci_low", "ci_high"]])
            rows.append({"interaction_split": strategy if strategy != "auto" else f"auto -> {info['interaction_split']}",
                         "evaluated_users": info["evaluated_users"], "selected": sel, f"selected ndcg@{k} [95% CI]": cell(sel),
                         f"most_popular ndcg@{k} [95% CI]": cell("most_popular"),
                         "test_before_training": round(info["interaction_leak"]["test_before_training_share"], 3),
                         "training_after_test_mean": round(info["interaction_leak"]["training_after_test_share"], 3),
                         "test_before_own_training": round(info["interaction_leak"]["test_before_own_training_share"], 3)})
            if strategy == "auto": print(f"# auto: {info['interaction_split_reason']}", flush=True)
            if info["few_users_warning"]: print(f"# {strategy}: warning: {info['few_users_warning']}", flush=True)
        with pd.option_context("display.width", 250, "display.max_columns", 20):
            print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
