"""End-to-end tests of `thinkalike-ml`: the real CLI, papermill and the stage notebooks, small profile."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("thinkalike-ml"))


def cli(*args, reports=None, check=None):
    "Run the thinkalike-ml command; return the completed process."
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    extra = ["--reports-dir", str(reports)] if reports is not None else []
    p = subprocess.run([CLI, *args[:1], *extra, *args[1:]] if extra else [CLI, *args], capture_output=True, text=True,
                       env=env, timeout=900, cwd=ROOT)
    if check is not None: assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def tree_digest(folder: Path) -> dict:
    "sha256 of every file under `folder`, by relative path."
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def first_run(reports):
    "A complete small run of every stage."
    p = cli("run", "--small", "--no-progress", reports=reports, check=0)
    assert "succeeded" in p.stdout
    return Path(p.stdout.strip().splitlines()[-1].split("report: ", 1)[1])


def test_run_leaves_a_complete_report(first_run):
    from thinkalike_ml.pipeline import STAGES, stage_notebook
    manifest = json.loads((first_run/"manifest.json").read_text())
    assert manifest["status"] == "succeeded"
    assert [s["name"] for s in manifest["stages"]] == STAGES
    assert all(s["status"] == "succeeded" and s["duration_s"] > 0 for s in manifest["stages"])
    assert manifest["code"]["commit"] and manifest["packages"]["papermill"] and manifest["params_hash"]
    params = json.loads((first_run/"params.json").read_text())
    assert params["n_users"] == 400 and params["seed"] == 42
    for stage in STAGES:
        nb = stage_notebook(stage)
        assert (first_run/"notebooks"/nb.name).is_file()
        html = (first_run/"html"/f"{nb.stem}.html").read_text()
        assert "<html" in html
        assert "from fastcore.test import" not in html, "#| hide cells must not reach the HTML report"
        assert 'src="http' not in html, "the HTML report must load nothing from the network"
    metrics = json.loads((first_run/"metrics.json").read_text())
    assert set(metrics) >= set(STAGES)


def test_executed_notebook_got_the_run_parameters(first_run):
    import nbformat
    nb = nbformat.read(first_run/"notebooks"/"01_data.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and str(first_run) in injected[0].source


def test_second_run_is_a_new_folder_and_leaves_the_first_unchanged(first_run, reports):
    before = tree_digest(first_run)
    p = cli("run", "--small", "--no-progress", "--until", "splits", reports=reports, check=0)
    second = Path(p.stdout.strip().splitlines()[-1].split("report: ", 1)[1])
    assert second != first_run and second.parent == first_run.parent
    assert tree_digest(first_run) == before
    assert json.loads((second/"params.json").read_text()) == json.loads((first_run/"params.json").read_text())


def test_failing_stage_names_the_stage_and_is_listed_as_failed(first_run, reports, tmp_path):
    bad = tmp_path/"users.csv"
    bad.write_text('user_id,name\n1,"unclosed\n')
    p = cli("run", "--small", "--no-progress", "-p", "source", "files", "-p", "files", f"{{users: {bad}}}", reports=reports)
    assert p.returncode == 1, p.stderr
    assert "stage 'data' failed" in p.stderr and "marked failed" in p.stderr
    failed = Path(p.stderr.strip().splitlines()[-1].split("partial report: ", 1)[1])
    manifest = json.loads((failed/"manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["stages"][0]["status"] == "failed"
    assert "stage 'data'" in manifest["stages"][0]["error"]
    assert (failed/"notebooks"/"01_data.ipynb").is_file() and (failed/"html"/"01_data.html").is_file()
    listing = cli("list", reports=reports, check=0).stdout
    assert f"{first_run.name} succeeded" in " ".join(listing.split())
    assert f"{failed.name} failed" in " ".join(listing.split())
    shown = cli("show", failed.name[:20], reports=reports, check=0).stdout
    assert '"status": "failed"' in shown


@pytest.mark.parametrize("args, message", [
    (["-p", "no_such_param", "1"], "unknown parameter 'no_such_param'"),
    (["-p", "sede", "1"], "did you mean 'seed'"),
    (["-p", "seed", "abc"], "parameter 'seed': expected an integer"),
    (["-p", "consent_rate", "2"], "out of range"),
    (["--params", "/no/such/params.yaml"], "does not exist"),
    (["--only", "modles"], "unknown stage 'modles'"),
    (["--until", "nope"], "unknown stage 'nope'"),
])
def test_bad_input_fails_before_any_stage(args, message, tmp_path):
    reports = tmp_path/"reports"
    p = cli("run", "--small", *args, reports=reports)
    assert p.returncode == 2 and message in p.stderr, p.stderr
    assert not reports.exists() or not any(reports.iterdir()), "no run directory for a run that never started"


def test_malformed_params_file(tmp_path):
    f = tmp_path/"p.yaml"
    f.write_text("seed: [1, 2\n")
    p = cli("run", "--params", str(f), reports=tmp_path/"r")
    assert p.returncode == 2 and "not valid YAML" in p.stderr
    f.write_text("seed: 1\nn_trails: 3\n")
    p = cli("run", "--params", str(f), reports=tmp_path/"r")
    assert p.returncode == 2 and "did you mean 'n_trials'" in p.stderr
    assert not (tmp_path/"r").exists()


@pytest.mark.parametrize("command", [[], ["run"], ["list"], ["show"], ["params"]])
def test_every_command_has_help(command):
    p = cli(*command, "--help", check=0)
    assert "usage: thinkalike-ml" in p.stdout


def test_params_command_lists_the_schema():
    from thinkalike_ml.config import PARAMS
    out = cli("params", check=0).stdout
    assert all(name in out for name in PARAMS)
