"""The stage declarations and a stage notebook run on its own: one cached small upstream, reused, never written to."""
from __future__ import annotations

import json

import pytest

from thinkalike_ml.config import PARAMS
from thinkalike_ml.stages import STAGES, open_stage, stage, stage_names, upstream


def test_every_parameter_is_read_by_a_declared_stage_and_every_declared_one_exists():
    declared = {p for s in STAGES for p in s.params}
    assert declared == set(PARAMS)


def test_declared_loaders_runners_and_notebooks_exist():
    for s in STAGES:
        assert s.notebook_path().is_file(), s.notebook
        for f in (s.runner, *s.loaders, *filter(None, [s.lineage, s.preflight])):
            assert callable(s.function(f)), f"{s.module}.{f}"


def _files(root) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_stage_on_its_own_builds_its_upstream_once_and_reuses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("THINKALIKE_CACHE_DIR", str(tmp_path/"cache"))
    small = {"n_users": 60, "n_items": 12}
    run1, params = open_stage(None, "features", small)
    assert run1.standalone and params["n_users"] == 60
    entries = [p for p in (tmp_path/"cache").iterdir() if p.is_dir()]
    assert len(entries) == 1
    cached = entries[0]
    assert json.loads((cached/"cached_stages.json").read_text()) == stage_names(upstream("features"))
    before = _files(cached)
    run1.write_json("artifacts/features/probe.json", {"x": 1})  # the stage writes into its own copy only
    run2, _ = open_stage(None, "features", small)
    assert run2.path != run1.path and _files(cached) == before, "the cached upstream was rebuilt or written to"
    assert run2.exists("artifacts/splits/splits.json") and not run2.exists("artifacts/features/probe.json")
    open_stage(None, "features", {**small, "seed": 7})  # other parameters: another cached run
    assert len([p for p in (tmp_path/"cache").iterdir() if p.is_dir()]) == 2


def test_a_later_stage_extends_the_same_cached_run(tmp_path, monkeypatch):
    monkeypatch.setenv("THINKALIKE_CACHE_DIR", str(tmp_path/"cache"))
    small = {"n_users": 60, "n_items": 12}
    open_stage(None, "splits", small)
    open_stage(None, "features", small)
    (cached,) = [p for p in (tmp_path/"cache").iterdir() if p.is_dir()]
    assert json.loads((cached/"cached_stages.json").read_text()) == ["problem", "data", "splits"]


def test_unknown_stage_and_overrides_on_a_pipeline_run_are_errors(tmp_path):
    from thinkalike_ml.config import ParamError, resolve_params
    from thinkalike_ml.runs import RunDirectory
    from thinkalike_ml.stages import StageError
    with pytest.raises(StageError, match="did you mean 'splits'"): stage("split")
    run = RunDirectory.create(resolve_params(small=True), tmp_path)
    with pytest.raises(ParamError, match="fixed in its params.json"): open_stage(str(run.path), "data", {"seed": 1})
