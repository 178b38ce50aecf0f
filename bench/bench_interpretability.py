"""Interpretability benchmark; prints its figures.

SHAP values of 10,000 pairs with the tree explainer (target: at most 5 s on 2 cores): gradient-boosted trees of the
models stage's kind (`make_hgb`, 200 iterations, early stopping) fitted on the project's toy pair table, explained
with `shap_values` (TreeExplainer, path-dependent, log-odds), plus its local accuracy on those rows.
The linear explainer on the same rows is timed too, for comparison.

With `--variants`, the other ways to get tree attributions faster are timed on the same model and rows, with how far
they are from the exact values (shap's TreeExplainer options; the background size does not matter for the
path-dependent algorithm, which uses the trees' own cover counts and no background):
- `approximate=True` (Saabas: the path attributions of each tree's single decision path; additive but not SHAP values);
- the exact path-dependent values computed in two processes (joblib), one half of the rows each;
- `feature_perturbation='interventional'` with 100 background rows (exact for the background, O(background) per row;
  with `--interventional` only, it is about 6x slower than path-dependent here).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_interpretability.py [--rows 10000] [--variants] [--interventional]
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


def _tree_values(model, X, **kw) -> tuple[np.ndarray, float]:
    "(attributions, expected value) from shap's TreeExplainer; `kw` are its constructor's and `shap_values`'s options."
    import shap
    ex = shap.TreeExplainer(model, **{k: v for k, v in kw.items() if k in ("data", "feature_perturbation")})
    vals = ex.shap_values(np.asarray(X, float), **{k: v for k, v in kw.items() if k in ("approximate", "check_additivity")})
    return np.asarray(vals, float), float(np.ravel(ex.expected_value)[-1])


def variants(rows: int, interventional: bool = False) -> dict:
    "Seconds and distance from the exact path-dependent values of the faster alternatives, on the benchmark's tree model."
    from joblib import Parallel, delayed
    from scipy.stats import spearmanr
    X, y = toy_pairs(20_000 + rows)
    Xtr, ytr, Xe = X[:20_000], y[:20_000], X[20_000:]
    model = make_hgb(seed=0).fit(Xtr, ytr)
    t0 = time.perf_counter(); exact = _tree_values(model, Xe); out = {"path-dependent (exact)": (time.perf_counter() - t0, exact)}
    t0 = time.perf_counter(); saabas = _tree_values(model, Xe, approximate=True, check_additivity=False)
    out["approximate=True (Saabas)"] = (time.perf_counter() - t0, saabas)
    t0 = time.perf_counter()
    halves = Parallel(n_jobs=2)(delayed(_tree_values)(model, part) for part in np.array_split(Xe, 2))
    out["path-dependent, 2 processes"] = (time.perf_counter() - t0, (np.vstack([h[0] for h in halves]), halves[0][1]))
    if interventional:
        t0 = time.perf_counter()
        v = _tree_values(model, Xe, data=np.asarray(Xtr[:100], float), feature_perturbation="interventional", check_additivity=False)
        out["interventional, 100 background rows"] = (time.perf_counter() - t0, v)
    exact = exact[0]
    rank = lambda v: np.abs(v).mean(0)
    return {k: {"seconds": sec, "max_abs_diff": float(np.abs(v - exact).max()), "ranking_spearman": float(spearmanr(rank(v), rank(exact)).statistic),
                "local_accuracy": local_accuracy_error(model, Xe, v, ev)} for k, (sec, (v, ev)) in out.items()}


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
    ap.add_argument("--variants", action="store_true", help="also time the faster alternatives to exact tree SHAP")
    ap.add_argument("--interventional", action="store_true", help="with --variants: include interventional tree SHAP (slow)")
    a = ap.parse_args()
    for name, r in bench(a.rows).items():
        print(f"SHAP values of {a.rows:,} pairs, {r['kind']} explainer: {r['seconds']:.2f} s (target for trees: at most 5 s); "
              f"local accuracy max error {r['local_accuracy']:.2e}")
    if a.variants:
        for name, r in variants(a.rows, a.interventional).items():
            print(f"  {name}: {r['seconds']:.2f} s; max |difference| from exact {r['max_abs_diff']:.3g}; "
                  f"Spearman of the mean |value| ranking with exact {r['ranking_spearman']:.3f}; local accuracy max error {r['local_accuracy']:.2e}")
