"""The matcher under each `matcher_split` strategy: every model's test ROC AUC, its gap to the oracle (the generator's true
probabilities on the same test pairs) and how many test users were seen in training. Prints a table; asserts nothing.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_matcher_splits.py [--n-users 5000] [--n-trials 20]

Synthetic data have no event column, so the 'group' strategy groups suggestions by the fortnight they were made in
(a stand-in for events). Each strategy runs the stage's own pieces: `make_splits` (with its leakage checks), the
features stage (history embeddings fitted under its leakage rule for the strategy), and `train_matcher` with the
strategy's tuning folds.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from thinkalike_ml.config import resolve_params  # noqa: E402
from thinkalike_ml.data import load_dataset, load_truth, run_data_stage  # noqa: E402
from thinkalike_ml.features import build_matcher_table, history_embeddings, history_interactions  # noqa: E402
from thinkalike_ml.models import train_matcher  # noqa: E402
from thinkalike_ml.runs import RunDirectory  # noqa: E402
from thinkalike_ml.splits import MATCHER_SPLITS, make_splits, user_overlap  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-users", type=int, default=resolve_params()["n_users"])
    ap.add_argument("--n-trials", type=int, default=resolve_params()["n_trials"])
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        params = resolve_params(overrides=dict(dataset_store="", n_users=a.n_users, n_trials=a.n_trials))
        run = RunDirectory.create(params, root)
        run_data_stage(run, params)
        data, truth = load_dataset(run), load_truth(run)
        s = data["suggestions"]
        data["suggestions"] = s.assign(fortnight="f" + (s.timestamp.dt.day_of_year // 14).astype(str))
        print(f"# {a.n_users} users, {len(s)} suggestions, {a.n_trials} Optuna trials", flush=True)
        rows = []
        for strategy in MATCHER_SPLITS:
            t0 = time.perf_counter()
            p = dict(params, matcher_split=strategy, group_column="fortnight")
            splits = make_splits(data, p)
            history = history_embeddings(history_interactions(data, splits, strategy), seed=params["seed"])  # the features stage's rule
            table = build_matcher_table(data, splits, history=history)
            cols = [c for c in table.columns if c not in data["suggestions"].columns and c not in ("split", "fold")]
            res = train_matcher(table, cols, p, truth, splits["suggestion_folds"])
            test = res.scores[(res.scores["split"] == "test") & ~res.scores["model"].str.endswith("_uncalibrated")].set_index("model")["roc_auc"]
            sm = data["suggestions"].merge(splits["suggestions"], on="suggestion_id")
            ov = user_overlap(sm, sm["split"].to_numpy())
            for model, auc in test.items():
                rows.append(dict(strategy=strategy, model=model + (" (selected)" if model == res.selected else ""), test_roc_auc=round(auc, 4),
                                 gap_to_oracle=round(test["oracle"] - auc, 4), test_pairs=int((sm["split"] == "test").sum()),
                                 test_users_seen_in_train=round(ov["test_users_seen_in_train_share"], 3)))
            print(f"# {strategy}: {time.perf_counter() - t0:.1f} s", flush=True)
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
