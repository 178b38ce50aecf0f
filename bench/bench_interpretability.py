"""Interpretability benchmark; prints its figures.

SHAP values of 10,000 pairs with the tree explainer (target: at most 5 s on 2 cores): gradient-boosted trees of the
models stage's kind (`make_hgb`, 200 iterations, early stopping) fitted on the project's toy pair table, explained
with `shap_values` (exact path-dependent TreeSHAP in log-odds; for scikit-learn's HGB that is the stage's vectorised
`hgb_tree_shap`), plus its local accuracy on those rows, on one thread (the stage's `SHAP_THREADS`) and on two threads,
which give the same values. The linear explainer on the same rows is timed too. Wall and
CPU seconds are both printed, with the load average: on a shared machine the wall time grows with the load, the CPU
time much less. The model's shape (trees, leaves, depth, distinct features per path) is printed, since TreeSHAP's
cost grows with it.

With `--variants`, shap's own options on the same model and rows are timed, with how far their values are from ours:
- shap's `TreeExplainer` path-dependent (exact, C++, one thread; what the stage used before): the same values;
- `approximate=True` (Saabas: the path attributions of each tree's single decision path; additive but not SHAP values);
- shap's exact values computed in two processes (joblib), one half of the rows each;
- `feature_perturbation='interventional'` with 100 background rows (another definition of the values, exact for the
  background, O(background) per row; with `--interventional` only, it is slow).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_interpretability.py [--rows 10000] [--variants] [--interventional]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from thinkalike_ml.interpretability import _distinct_path_features, hgb_tree_shap, local_accuracy_error, shap_values
from thinkalike_ml.models import make_hgb, make_logreg


def toy_pairs(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    "28 pair-like features, 4 of them informative, and labels from a logistic truth."
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 28)), columns=[f"f{i}" for i in range(28)])
    logit = -1 + 1.5 * X["f0"] - 1.0 * X["f1"] + 0.8 * X["f2"] * X["f3"] + 0.3 * X["f4"]
    return X, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def _tree_values(model, X, **kw) -> tuple[np.ndarray, float]:
    "(attributions, expected value) from shap's TreeExplainer; `kw` are its constructor's and `shap_values`'s options."
    import shap
    ex = shap.TreeExplainer(model, **{k: v for k, v in kw.items() if k in ("data", "feature_perturbation")})
    vals = ex.shap_values(np.asarray(X, float), **{k: v for k, v in kw.items() if k in ("approximate", "check_additivity")})
    return np.asarray(vals, float), float(np.ravel(ex.expected_value)[-1])


def model_shape(model) -> dict:
    "Trees, mean and max leaves per tree, max depth and max distinct features on one path of a fitted HGB model."
    nodes = [p[0].nodes for p in model._predictors]
    leaves = [int(n["is_leaf"].sum()) for n in nodes]
    return {"trees": len(nodes), "leaves_mean": float(np.mean(leaves)), "leaves_max": max(leaves),
            "depth_max": max(int(n["depth"].max()) for n in nodes), "distinct_features_max": max(_distinct_path_features(n) for n in nodes)}


def _timed(f, *a, **kw):
    "(wall seconds, CPU seconds of this process, result)."
    t0, c0 = time.perf_counter(), time.process_time()
    out = f(*a, **kw)
    return time.perf_counter() - t0, time.process_time() - c0, out


def variants(rows: int, interventional: bool = False) -> dict:
    "Seconds and distance from our exact path-dependent values of shap's TreeExplainer options, on the benchmark's tree model."
    from joblib import Parallel, delayed
    from scipy.stats import spearmanr
    X, y = toy_pairs(20_000 + rows)
    Xtr, ytr, Xe = X[:20_000], y[:20_000], X[20_000:]
    model = make_hgb(seed=0).fit(Xtr, ytr)
    ours, ours_ev = hgb_tree_shap(model, Xe)
    out = {}
    wall, cpu, v = _timed(_tree_values, model, Xe); out["shap TreeExplainer path-dependent (exact, the stage's old path)"] = (wall, cpu, v)
    wall, cpu, v = _timed(_tree_values, model, Xe, approximate=True, check_additivity=False); out["shap approximate=True (Saabas)"] = (wall, cpu, v)
    split = lambda: Parallel(n_jobs=2)(delayed(_tree_values)(model, part) for part in np.array_split(Xe, 2))
    wall, cpu, halves = _timed(split)
    out["shap path-dependent, 2 processes"] = (wall, float("nan"), (np.vstack([h[0] for h in halves]), halves[0][1]))
    if interventional:
        wall, cpu, v = _timed(_tree_values, model, Xe, data=np.asarray(Xtr[:100], float), feature_perturbation="interventional", check_additivity=False)
        out["shap interventional, 100 background rows"] = (wall, cpu, v)
    rank = lambda v: np.abs(v).mean(0)
    return {k: {"seconds": wall, "cpu_seconds": cpu, "max_abs_diff": float(np.abs(v - ours).max()), "expected_diff": abs(ev - ours_ev),
                "ranking_spearman": float(spearmanr(rank(v), rank(ours)).statistic), "local_accuracy": local_accuracy_error(model, Xe, v, ev)}
            for k, (wall, cpu, (v, ev)) in out.items()}


def bench(rows: int) -> dict:
    X, y = toy_pairs(20_000 + rows)
    Xtr, ytr, Xe = X[:20_000], y[:20_000], X[20_000:]
    out, tree_values = {}, None
    for name, model, n_jobs in (("tree", make_hgb(seed=0), 1), ("tree, 2 threads", None, 2),
                                ("linear", make_logreg(seed=0), 1)):
        if model is None: model = out["tree"]["model"]
        else: model.fit(Xtr, ytr)
        wall, cpu, (vals, ev, kind) = _timed(shap_values, model, Xe, Xtr[:200], n_jobs=n_jobs)
        out[name] = {"seconds": wall, "cpu_seconds": cpu, "kind": kind, "threads": n_jobs, "local_accuracy": local_accuracy_error(model, Xe, vals, ev),
                     "model": model, **({"shape": model_shape(model)} if name == "tree" else {})}
        if kind == "tree":
            if tree_values is None: tree_values = vals
            else: out[name]["max_abs_diff_from_one_thread"] = float(np.abs(vals - tree_values).max())
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--variants", action="store_true", help="also time the faster alternatives to exact tree SHAP")
    ap.add_argument("--interventional", action="store_true", help="with --variants: include interventional tree SHAP (slow)")
    a = ap.parse_args()
    load = lambda: "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average (1/5/15 min) at start: {load()} on {os.cpu_count()} cores")
    for name, r in bench(a.rows).items():
        if "shape" in r: print("tree model: " + ", ".join(f"{k} {v:g}" for k, v in r["shape"].items()))
        print(f"SHAP values of {a.rows:,} pairs, {r['kind']} explainer, {r['threads']} thread(s): {r['seconds']:.2f} s wall, "
              f"{r['cpu_seconds']:.2f} s CPU (all threads; target for trees: at most 5 s); local accuracy max error {r['local_accuracy']:.2e}"
              + (f"; max |difference| from one thread {r['max_abs_diff_from_one_thread']:.1e}" if "max_abs_diff_from_one_thread" in r else ""))
    if a.variants:
        for name, r in variants(a.rows, a.interventional).items():
            print(f"  {name}: {r['seconds']:.2f} s wall, {r['cpu_seconds']:.2f} s CPU; max |difference| from ours {r['max_abs_diff']:.3g} "
                  f"(expected value {r['expected_diff']:.2g}); Spearman of the mean |value| ranking with ours {r['ranking_spearman']:.3f}; "
                  f"local accuracy max error {r['local_accuracy']:.2e}")
    print(f"load average at end: {load()}")
