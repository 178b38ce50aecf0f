"""Interpretability benchmark; prints its figures.

SHAP values of 10,000 pairs with the tree explainer (target: at most 5 s on 2 cores): gradient-boosted trees of the
models stage's kind (`make_hgb`, 200 iterations, early stopping) fitted on the project's toy pair table, explained
with `shap_values` (TreeExplainer, path-dependent, log-odds), plus its local accuracy on those rows.
The linear explainer on the same rows is timed too, for comparison.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_interpretability.py [--rows 10000]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from thinkalike_ml.interpretability import local_accuracy_error, shap_values
from thinkalike_ml.models import make_hgb, make_logreg


def toy_pairs(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    "28 pair-like features, 4 of them informative, and labels from a logistic truth."
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 28)), columns=[f"f{i}" for i in range(28)])
    logit = -1 + 1.5 * X["f0"] - 1.0 * X["f1"] + 0.8 * X["f2"] * X["f3"] + 0.3 * X["f4"]
    return X, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def bench(rows: int) -> dict:
    X, y = toy_pairs(20_000 + rows)
    Xtr, ytr, Xe = X[:20_000], y[:20_000], X[20_000:]
    out = {}
    for name, model in (("tree", make_hgb(seed=0)), ("linear", make_logreg(seed=0))):
        model.fit(Xtr, ytr)
        t0 = time.perf_counter()
        vals, ev, kind = shap_values(model, Xe, Xtr[:200])
        out[name] = {"seconds": time.perf_counter() - t0, "kind": kind, "local_accuracy": local_accuracy_error(model, Xe, vals, ev)}
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    a = ap.parse_args()
    for name, r in bench(a.rows).items():
        print(f"SHAP values of {a.rows:,} pairs, {r['kind']} explainer: {r['seconds']:.2f} s (target for trees: at most 5 s); "
              f"local accuracy max error {r['local_accuracy']:.2e}")
