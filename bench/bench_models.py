"""Benchmark the matcher and recommender models: fit time, prediction throughput and peak memory,
at the default data size and at 10x. Prints a table; asserts nothing.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_models.py [--scales 1 10]

Each model is fitted with fixed (untuned) hyperparameters on the training split of a synthetic run
built in a temporary folder, through the stage's own pieces (`matcher_data`, `recommender_data`,
`recommendation_lists`, the function that makes the stored top-k lists); peak memory is the peak
of traced (Python + NumPy) allocations during the fit, via tracemalloc.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from thinkalike_ml.config import resolve_params  # noqa: E402
from thinkalike_ml.data import load_dataset  # noqa: E402
from thinkalike_ml.features import load_features  # noqa: E402
from thinkalike_ml.models import (EASERecommender, ItemKNNRecommender, MostPopularRecommender,  # noqa: E402
                                  ValueProfileRecommender, calibrate_on_validation, interaction_data, make_hgb,
                                  make_logreg, matcher_data, recommendation_lists, recommender_data)
from thinkalike_ml.runs import RunDirectory  # noqa: E402
from thinkalike_ml.splits import load_splits  # noqa: E402
from thinkalike_ml.stages import execute_stage  # noqa: E402
from thinkalike_ml.tracking import measured  # noqa: E402


def build(scale: int, root: Path):
    base = resolve_params()
    params = resolve_params(overrides=dict(dataset_store="", n_users=base["n_users"] * scale, n_items=base["n_items"] * scale))
    run = RunDirectory.create(params, root)
    t = time.perf_counter()
    for stage in ("data", "splits", "features"): execute_stage(run, stage, params)
    return run, params, time.perf_counter() - t


def bench(scale: int, root: Path) -> list[dict]:
    run, params, build_s = build(scale, root)
    print(f"# scale {scale}x: {params['n_users']} users, {params['n_items']} items; data+splits+features {build_s:.1f} s", flush=True)
    rows = []
    f = load_features(run)
    md = matcher_data(f["pair_features"], f["pair_columns"])
    def one(model, name, fit, predict, n_pred, n_fit):
        with measured() as m: fitted = fit(model)
        with measured() as p: predict(fitted)
        rows.append(dict(scale=f"{scale}x", model=name, fit_rows=n_fit, fit_s=round(m.seconds, 3), fit_peak_mib=round(m.peak_mib, 1),
                         predict_rows_per_s=round(n_pred / max(p.seconds, 1e-9)), predict_peak_mib=round(p.peak_mib, 1)))
        print(rows[-1], flush=True)
        return fitted
    n_tr, n_va, n_te = (len(md.tables[s]) for s in ("train", "validation", "test"))
    for name, mk in (("matcher/logreg", lambda: make_logreg(0)), ("matcher/hgb", lambda: make_hgb(0))):
        fitted = one(mk(), name, lambda m: m.fit(md.X("train"), md.y("train")), lambda m: m.predict_proba(md.X("test")), n_te, n_tr)
        one(fitted, name + "+isotonic", lambda m: calibrate_on_validation(m, md.X("validation"), md.y("validation"), "isotonic"),
            lambda m: m.predict_proba(md.X("test")), n_te, n_va)
    rd = recommender_data(load_dataset(run)["interactions"], load_splits(run), f["user_features"])
    d = interaction_data(rd.train, user_features=rd.user_features)
    users = np.arange(d.n_users)
    for name, model in (("recommender/most_popular", MostPopularRecommender()), ("recommender/item_knn", ItemKNNRecommender(50)),
                        ("recommender/ease", EASERecommender(300.0)), ("recommender/value_profile", ValueProfileRecommender())):
        one(model, name, lambda m: m.fit(d), lambda m: [recommendation_lists(m, d, users[i:i + 2000], 10) for i in range(0, len(users), 2000)],
            len(users), int(d.X.nnz))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    args = ap.parse_args()
    os.environ.setdefault("THINKALIKE_PSEUDONYM_KEY", "bench-pseudonym-key")
    root = Path(tempfile.mkdtemp(prefix="bench-models-"))
    try:
        rows = [r for s in args.scales for r in bench(s, root)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(pd.DataFrame(rows).to_string(index=False))
    print("(prediction throughput: pairs/s for the matcher, users/s (top-10 lists with scores, seen items excluded) for the recommender)")


if __name__ == "__main__":
    main()
