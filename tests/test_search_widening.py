"""Search spaces that widen themselves (issue 9, item 4): the edge rule, the widening searches, the budget, the parameter."""
from __future__ import annotations

import numpy as np
import pytest

from thinkalike_ml.models import (NATURAL_BOUNDS, SEARCH_STATUSES, check_widenings, edge_side, grid_position, widen_space, widen_study,
                                  widening_grid_search)


def test_edge_rule_on_hand_made_grids_and_ranges():
    assert [edge_side(v, (0.001, 0.01, 0.1, 1.0, 10.0)) for v in (0.001, 0.01, 1.0, 10.0)] == ["low", None, None, "high"]
    assert [edge_side(v, (3.0, 14.0, 60.0)) for v in (3.0, 14.0, 60.0)] == ["low", None, "high"]
    # a log range: 5% of the log width from either end (1..1e4: below 10**0.2 or above 10**3.8)
    assert [edge_side(v, (1.0, 1e4, True)) for v in (1.5, 1.6, 6300.0, 6400.0, 8342.0)] == ["low", None, None, "high", "high"]
    # a linear range: 5% of its width
    assert [edge_side(v, (0.3, 1.0, False)) for v in (0.334, 0.336, 0.964, 0.966)] == ["low", None, None, "high"]
    assert edge_side(4, (4, 48, True)) == "low" and edge_side(5, (4, 48, True)) is None
    assert edge_side(7, [7]) is None  # one value: nothing was searched
    assert grid_position(50, (10, 25, 50, 100)) == pytest.approx(2 / 3)


def test_widening_steps_respect_natural_bounds():
    assert widen_space((0.001, 0.01, 0.1, 1.0, 10.0), "high") == pytest.approx((0.001, 0.01, 0.1, 1.0, 10.0, 100.0))
    assert widen_space((0.001, 0.01, 0.1, 1.0, 10.0), "low")[0] == pytest.approx(1e-4)  # C stays positive
    assert widen_space((10, 25, 50, 100), "high", (1, 149)) == (10, 25, 50, 100, 149)  # at most n_items - 1 neighbours
    assert widen_space((10, 25, 50, 149), "high", (1, 149)) is None
    assert widen_space((4, 48, True), "low", NATURAL_BOUNDS["max_leaf_nodes"]) == (2, 48, True)  # at least 2 leaves
    assert widen_space((2, 48, True), "low", NATURAL_BOUNDS["max_leaf_nodes"]) is None
    lo = widen_space((0.05, 0.3, True), "high", NATURAL_BOUNDS["learning_rate"])
    assert lo[1] == pytest.approx(0.3 * 6 ** 0.5) and widen_space((0.05, 1.0, True), "high", NATURAL_BOUNDS["learning_rate"]) is None
    assert all(isinstance(v, int) for v in widen_space((10, 300, True), "high")[:2])  # integer ranges stay integer
    assert widen_space((3.0, 14.0, 60.0), "low")[0] > 0  # half-lives stay positive


def _peak(at):
    return lambda values: [-abs(np.log(v / at)) for v in values]


def test_widening_grid_search_reaches_an_optimum_outside_the_initial_grid():
    trials, edge = widening_grid_search((10, 25, 50, 100), _peak(700), max_widenings=5, model="toy", parameter="k")
    assert edge["status"] == "inside" and edge["widenings"] == 4 and edge["chosen"] == 800
    assert 0 < edge["position"] < 1 and edge_side(edge["chosen"], eval(edge["search_space"])) is None
    assert len(trials) == 4 + 4  # one new value per widening, the old ones not re-scored
    # optimum below the grid
    _, low = widening_grid_search((3.0, 14.0, 60.0), _peak(0.5), max_widenings=5)
    assert low["status"] == "inside" and low["chosen"] < 3.0


def test_widening_budget_is_respected_then_the_report_warns():
    calls = []
    def score(values):
        calls.append(list(values))
        return _peak(1e6)(values)
    trials, edge = widening_grid_search((10, 25, 50, 100), score, max_widenings=2, model="toy", parameter="k")
    assert edge["status"] == "budget exhausted" and edge["widenings"] == 2 and len(calls) == 3 and len(trials) == 6
    _, none = widening_grid_search((10, 25, 50, 100), score, max_widenings=0)
    assert none["status"] == "budget exhausted" and none["widenings"] == 0
    # and the evaluation stage warns about exactly that setting
    import pandas as pd
    from thinkalike_ml.evaluation import edge_flags
    rows = pd.DataFrame([{**edge, "selected": True, "at_edge": True}])
    assert ["after 2 widenings" in f for f in edge_flags(rows)] == [True]
    assert edge_flags(rows.assign(status="natural bound")) == []


def test_no_extra_trials_when_nothing_is_at_an_edge():
    calls = []
    def score(values):
        calls.append(list(values))
        return _peak(40)(values)
    trials, edge = widening_grid_search((10, 25, 50, 100), score, max_widenings=3)
    assert len(calls) == 1 and len(trials) == 4 and edge["status"] == "inside" and edge["widenings"] == 0


def test_optuna_study_widens_and_continues():
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    def run(optimum, max_widenings):
        space = {"x": (1.0, 1e4, True), "y": (0.3, 1.0, False)}
        def objective(t):
            x, y = t.suggest_float("x", *space["x"][:2], log=True), t.suggest_float("y", *space["y"][:2])
            return -abs(np.log(x / optimum)) - abs(y - 0.6)
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
        study.optimize(objective, n_trials=10)
        def optimize(wider, n):
            space.update(wider)
            study.optimize(objective, n_trials=n)
        final, edges = widen_study(study, optimize, dict(space), max_widenings, 5, "toy")
        return study, final, {e["parameter"]: e for e in edges}
    study, final, e = run(3e5, 4)
    assert e["x"]["status"] == "inside" and e["x"]["widenings"] >= 1 and final["x"][1] > 3e5 and 0 < e["x"]["position"] < 1
    assert e["y"]["status"] == "inside" and e["y"]["widenings"] == 0
    assert len(study.trials) == 10 + 5 * e["x"]["widenings"]
    study, _, e = run(1e9 * 1e9, 1)  # out of reach: the budget runs out
    assert e["x"]["status"] == "budget exhausted" and e["x"]["widenings"] == 1 and len(study.trials) == 15
    study, _, e = run(100.0, 3)  # inside from the start: no extra trial
    assert len(study.trials) == 10 and {r["status"] for r in e.values()} == {"inside"}
    assert set(SEARCH_STATUSES) >= {r["status"] for r in e.values()}


def test_bad_widening_parameter_gives_a_clear_error():
    from thinkalike_ml.config import resolve_params
    for bad in (-1, 1.5, "two", True):
        with pytest.raises(ValueError, match="max_grid_widenings"):
            check_widenings(bad)
    with pytest.raises(ValueError, match="max_grid_widenings"):
        resolve_params(overrides=dict(max_grid_widenings=-1))
    with pytest.raises(ValueError, match="side"):
        widen_space((1, 2, 3), "middle")
    assert resolve_params(overrides=dict(max_grid_widenings=0))["max_grid_widenings"] == 0
