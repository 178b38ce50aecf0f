"""A real MLflow tracking server (SQLite backend, served artifacts): a small models stage tracks into it, and the logged model loads back and scores."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import free_port, start_server, stop_server, wait_http


@pytest.fixture()
def mlflow_server(tmp_path):
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
           "--artifacts-destination", str(tmp_path / "artifacts"), "--serve-artifacts", "--workers", "1"]
    proc = start_server(cmd, tmp_path / "server.log", env={**__import__("os").environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=120, proc=proc)
        yield f"http://127.0.0.1:{port}", tmp_path
    finally:
        stop_server(proc)  # always, whatever the test did


@pytest.mark.slow
def test_models_stage_tracks_to_a_server_and_the_model_loads_back(mlflow_server, monkeypatch, tmp_path):
    import mlflow
    from thinkalike_ml.config import resolve_params
    from thinkalike_ml.tracking import use_store
    from thinkalike_ml.features import load_features
    from thinkalike_ml.models import load_predictions
    from thinkalike_ml.runs import RunDirectory
    from thinkalike_ml.stages import execute_stage
    uri, server_dir = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("THINKALIKE_PSEUDONYM_KEY", "test-pseudonym-key")
    params = resolve_params(overrides=dict(n_users=300, n_items=40, n_trials=2, mlflow_experiment="server-test"), small=True)
    run = RunDirectory.create(params, tmp_path / "reports")
    for stage in ("data", "splits", "features", "models"): metrics = execute_stage(run, stage, params)
    rec = json.loads((run.path / "artifacts/tracking.json").read_text())
    assert rec["tracking_uri"] == uri
    assert not (run.path / "mlruns").exists()  # nothing tracked locally when a server is configured
    client = mlflow.MlflowClient(uri)
    r = client.get_run(rec["run_id"])
    assert r.data.metrics["matcher_test_roc_auc"] == pytest.approx(metrics["matcher_test_roc_auc"])
    assert client.get_experiment(rec["experiment_id"]).artifact_location.startswith("mlflow-artifacts:")
    use_store(uri)  # not exported: later in-process runs keep their own stores
    logged = {m.name: m for m in mlflow.search_logged_models(experiment_ids=[rec["experiment_id"]], output_format="list")}
    matcher = mlflow.pyfunc.load_model(logged["matcher"].model_uri)  # downloaded through the server
    feats = load_features(run)
    stored = load_predictions(run)["matcher"]
    stored = stored[(stored.split == "test") & (stored.model == r.data.params["matcher.selected"]) & stored.calibrated].head(50)
    X = feats["pair_features"].set_index("suggestion_id").loc[stored.suggestion_id, feats["pair_columns"]].reset_index(drop=True)
    p = np.asarray(matcher.predict(X))
    assert p.shape == (50, 2) and ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p[:, 1], stored.p, rtol=1e-9)  # the served model is the one whose predictions the run stored
    recommender = mlflow.pyfunc.load_model(logged["recommender"].model_uri)
    users = feats["user_features"].head(2)
    out = recommender.predict(users.astype({"user_id": str}))
    assert len(out) == 2 * params["top_k"] and set(out["user_id"]) == set(users.user_id)
    # the artifacts were stored by the server, in its artifacts destination
    assert any((server_dir / "artifacts").rglob("MLmodel"))
