"""Tracking for teams: an MLflow tracking server backed by a real PostgreSQL database.

The test starts a throwaway PostgreSQL cluster on 127.0.0.1 (initdb + pg_ctl in a temporary folder, a free
port, password authentication), an `mlflow server` whose backend store is that database, runs the small
profile's data, splits, features, models and registry stages with `MLFLOW_TRACKING_URI` pointing at the
server, and checks that the run, its metrics and the registered versions and aliases are in the server
and in the database's own tables. Both servers are stopped in a `finally`, whatever happened.

PostgreSQL's binaries come from Debian's `postgresql` package (`make setup-test` installs it where it is
missing). A missing binary fails the test, with what to do, rather than skipping it.
"""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from helpers import free_port, start_server, stop_server, wait_http

PG_SEARCH = "/usr/lib/postgresql/*/bin"  # where Debian's postgresql-NN package puts the server binaries (not on PATH)


def postgres_binary(name: str) -> Path:
    """`initdb`/`pg_ctl` from PATH, else from the newest Debian PostgreSQL; fails with what to do when missing."""
    found = shutil.which(name)
    if found: return Path(found)
    version = lambda p: int(re.sub(r"\D", "", p.parent.parent.name) or 0)
    candidates = sorted(Path("/").glob(f"{PG_SEARCH.lstrip('/')}/{name}"), key=version, reverse=True)
    if candidates: return candidates[0]
    pytest.fail(f"PostgreSQL's `{name}` is missing (not on PATH nor in {PG_SEARCH}): run `make setup-test` "
                "(it installs Debian's postgresql) and retry")


def _as_cluster_owner() -> tuple[list[str], int | None, int | None]:
    """PostgreSQL refuses to run as root: the command prefix, uid and gid that run it as an unprivileged user."""
    if os.geteuid() != 0: return [], None, None
    for name in ("postgres", "nobody"):  # Debian's package creates `postgres`
        try: user = pwd.getpwnam(name)
        except KeyError: continue
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        return [runuser, "-u", name, "--"], user.pw_uid, user.pw_gid
    pytest.fail("running as root and neither a `postgres` nor a `nobody` user exists to own the PostgreSQL cluster")


@contextlib.contextmanager
def postgres_database(db: str = "mlflow", user: str = "mlflow"):
    """A throwaway PostgreSQL cluster on 127.0.0.1 with database `db`; yields (URI without password, pgpass file, dsn).

    The password lives only in a libpq password file (mode 0600), so neither the URI nor a command line
    carries it; clients that should reach the database get `PGPASSFILE` pointing at it."""
    import psycopg
    initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
    prefix, uid, gid = _as_cluster_owner()
    root = Path(tempfile.mkdtemp(prefix="thinkalike-pg-"))  # not pytest's tmp_path: the cluster owner must reach it
    data, log, pwfile, pgpass = root / "data", root / "postgres.log", root / "pwfile", root / "pgpass"
    password, port = secrets.token_urlsafe(24), free_port()
    pwfile.write_text(password + "\n")
    pgpass.write_text(f"127.0.0.1:{port}:*:{user}:{password}\n")
    pgpass.chmod(0o600)
    if uid is not None:
        for p in (root, pwfile): os.chown(p, uid, gid)
    run = lambda *cmd, **kw: subprocess.run(prefix + [str(c) for c in cmd], capture_output=True, text=True, timeout=120, cwd=root, **kw)
    started = False
    try:
        r = run(initdb, "-D", data, "-U", user, f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                "--locale=C", "--no-sync")
        assert r.returncode == 0, f"initdb failed:\n{r.stdout}\n{r.stderr}"
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off"
        r = run(pg_ctl, "-D", data, "-l", log, "-o", opts, "-w", "-t", "60", "start")
        started = True
        assert r.returncode == 0, f"pg_ctl start failed:\n{r.stdout}\n{r.stderr}\n{log.read_text() if log.exists() else ''}"
        dsn = dict(host="127.0.0.1", port=port, user=user, password=password)
        with psycopg.connect(dbname="postgres", autocommit=True, **dsn) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        yield f"postgresql://{user}@127.0.0.1:{port}/{db}", pgpass, dsn | {"dbname": db}
    finally:
        if started: run(pg_ctl, "-D", data, "-m", "immediate", "-w", "-t", "60", "stop")  # a throwaway: no checkpoint needed
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def mlflow_on_postgres(tmp_path):
    """`mlflow server` on a free 127.0.0.1 port whose backend store is a throwaway PostgreSQL database; yields (url, dsn, artifacts)."""
    with postgres_database() as (db_uri, pgpass, dsn):
        port, artifacts = free_port(), tmp_path / "artifacts"
        cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", db_uri,
               "--artifacts-destination", str(artifacts), "--serve-artifacts",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "PGPASSFILE": str(pgpass)}
        proc = start_server(cmd, tmp_path / "mlflow-server.log", env=env, cwd=tmp_path)
        try:
            wait_http(f"http://127.0.0.1:{port}/health", timeout=180, proc=proc)
            yield f"http://127.0.0.1:{port}", dsn, artifacts
        except Exception:
            print((tmp_path / "mlflow-server.log").read_text()[-5000:])
            raise
        finally:
            stop_server(proc)


def db_rows(dsn: dict, sql: str, *args) -> list[tuple]:
    """Rows of a query on the tracking database itself (not through MLflow)."""
    import psycopg
    with psycopg.connect(**dsn) as conn: return conn.execute(sql, args).fetchall()


@pytest.mark.slow
def test_models_and_registry_track_into_a_postgres_backed_server(mlflow_on_postgres, monkeypatch, tmp_path):
    import mlflow
    from thinkalike_ml.config import resolve_params
    from thinkalike_ml.data import dataset_version
    from thinkalike_ml.features import load_features
    from thinkalike_ml.models import load_predictions
    from thinkalike_ml.registry import MODEL_NAMES, load_registered_model, load_registry
    from thinkalike_ml.runs import RunDirectory
    from thinkalike_ml.stages import execute_stage
    from thinkalike_ml.tracking import tracking_record
    url, dsn, artifacts = mlflow_on_postgres
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)  # how a team points the project at its server
    monkeypatch.setenv("THINKALIKE_PSEUDONYM_KEY", "test-pseudonym-key")
    params = resolve_params(overrides=dict(mlflow_experiment="team-postgres"), small=True)
    run = RunDirectory.create(params, tmp_path / "reports")
    metrics = {s: execute_stage(run, s, params) for s in ("data", "splits", "features", "models", "registry")}
    rec = tracking_record(run)
    assert rec["tracking_uri"] == url and not (run.path / "mlruns").exists()  # nothing tracked locally

    client = mlflow.MlflowClient(url, registry_uri=url)
    r = client.get_run(rec["run_id"])
    assert r.info.status in ("RUNNING", "FINISHED") and r.data.tags["thinkalike.run_id"] == str(run.id)
    assert {"thinkalike.stage.models", "thinkalike.stage.registry"} <= set(r.data.tags)
    assert r.data.params["n_users"] == str(params["n_users"]) and r.data.params["seed"] == str(params["seed"])
    assert r.data.metrics["matcher_test_roc_auc"] == pytest.approx(metrics["models"]["matcher_test_roc_auc"])
    for k, v in metrics["registry"].items():
        if k != "registry_seconds": assert r.data.metrics[f"registry.{k}"] == pytest.approx(v), k
    assert client.get_experiment(rec["experiment_id"]).artifact_location.startswith("mlflow-artifacts:")
    assert any(artifacts.rglob("MLmodel")), "the logged models' files should be in the server's artifacts destination"

    summary = load_registry(run)["summary"]
    assert summary["tracking_uri"] == url
    dataset_hash = dataset_version(run)["hash"]
    for family, name in MODEL_NAMES.items():
        s = summary["models"][family]
        mv = client.get_model_version(name, str(s["version"]))
        assert mv.run_id == rec["run_id"] and mv.tags["dataset_hash"] == str(dataset_hash) and mv.tags["semver"] == s["semver"]
        assert client.get_model_version_by_alias(name, s["alias"]).version == mv.version
        assert metrics["registry"][f"{family}_registry_version"] == float(mv.version)

    # the same facts, read from PostgreSQL's own tables: the server really stored them there
    assert db_rows(dsn, "SELECT status FROM runs WHERE run_uuid = %s", rec["run_id"])
    (auc,), = db_rows(dsn, "SELECT value FROM latest_metrics WHERE run_uuid = %s AND key = 'matcher_test_roc_auc'", rec["run_id"])
    assert auc == pytest.approx(metrics["models"]["matcher_test_roc_auc"])
    aliases = dict(((n, a), int(v)) for n, a, v in db_rows(dsn, "SELECT name, alias, version FROM registered_model_aliases"))
    versions = {(n, int(v)): rid for n, v, rid in db_rows(dsn, "SELECT name, version, run_id FROM model_versions")}
    for family, name in MODEL_NAMES.items():
        s = summary["models"][family]
        assert aliases[(name, s["alias"])] == s["version"] and versions[(name, s["version"])] == rec["run_id"]

    # a teammate loads the registered matcher by its alias through the server: the model whose predictions the run stored
    s = summary["models"]["matcher"]
    model, mv = load_registered_model("matcher", s["alias"], url)
    assert int(mv.version) == s["version"]
    feats, stored = load_features(run), load_predictions(run)["matcher"]
    stored = stored[(stored.split == "test") & (stored.model == r.data.params["matcher.selected"]) & stored.calibrated].head(50)
    X = feats["pair_features"].set_index("suggestion_id").loc[stored.suggestion_id, feats["pair_columns"]].reset_index(drop=True)
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], stored.p, rtol=1e-9)


def test_a_missing_postgres_binary_fails_and_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(globals(), "PG_SEARCH", str(tmp_path / "usr/lib/postgresql/*/bin"))
    with pytest.raises(pytest.fail.Exception, match=r"`initdb` is missing .*make setup-test"): postgres_binary("initdb")


def test_the_newest_debian_postgres_is_found_off_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(globals(), "PG_SEARCH", str(tmp_path / "usr/lib/postgresql/*/bin"))
    for v in ("9", "15", "13"):
        (tmp_path / f"usr/lib/postgresql/{v}/bin").mkdir(parents=True)
        (tmp_path / f"usr/lib/postgresql/{v}/bin/pg_ctl").touch()
    assert postgres_binary("pg_ctl") == tmp_path / "usr/lib/postgresql/15/bin/pg_ctl"  # by number, not by name
