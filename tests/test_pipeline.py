"""End-to-end tests of `thinkalike-ml`: the real CLI, papermill and the stage notebooks, small profile.

The default tier makes one complete small run (the `first_run` fixture) and checks everything it
can on it; runs of more stages or of everything twice are marked slow.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("thinkalike-ml"))


def cli(*args, reports=None, check=None, env=None):
    "Run the thinkalike-ml command; return the completed process."
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    extra = ["--reports-dir", str(reports)] if reports is not None else []
    p = subprocess.run([CLI, *args[:1], *extra, *args[1:]] if extra else [CLI, *args], capture_output=True, text=True,
                       env=env, timeout=900, cwd=ROOT)
    if check is not None: assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def report_of(p) -> Path:
    "The run folder a successful `run` printed."
    return Path(p.stdout.strip().splitlines()[-1].split("report: ", 1)[1])


def tree_digest(folder: Path) -> dict:
    "sha256 of every file under `folder`, by relative path."
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.rglob("*")) if f.is_file()}


def without_timings(metrics: dict) -> dict:
    "A run's metrics without wall-clock and memory figures, which differ between identical runs (nor the documents' count of met criteria: one is a latency; nor their count of checked numbers, which includes the timings quoted)."
    timing = ("seconds", "_per_second", "peak_mib", "peak_rss_mib", "alerts_system")
    load = {"new_version", "criteria_met", "criteria_not_met", "numbers_checked"}
    return {s: {k: v for k, v in m.items() if not any(t in k for t in timing) and k not in load} for s, m in metrics.items()}


def verdicts_without_latency(run_dir) -> dict:
    "Each success criterion's verdict, the latency criteria aside (a request's latency depends on the machine's load)."
    from thinkalike_ml.reports import DOCUMENTS_INDEX
    rows = json.loads((run_dir/DOCUMENTS_INDEX).read_text())["success_criteria"]
    assert any("latency" in r["name"] for r in rows) and len(rows) >= 4, rows
    return {r["name"]: r["verdict"] for r in rows if "latency" not in r["name"]}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def first_run(reports):
    "A complete small run of every stage."
    p = cli("run", "--small", "--no-progress", reports=reports, check=0)
    assert "succeeded" in p.stdout
    assert "without encryption" not in p.stderr and "KeyboardInterrupt" not in p.stderr, p.stderr
    return report_of(p)


def test_run_leaves_a_complete_report(first_run):
    from thinkalike_ml.stages import STAGES, stage_names
    manifest = json.loads((first_run/"manifest.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["stage_selection"]["complete"]
    assert [s["name"] for s in manifest["stages"]] == stage_names()
    assert all(s["status"] == "succeeded" and s["duration_s"] > 0 for s in manifest["stages"])
    assert manifest["code"]["commit"] and manifest["packages"]["papermill"] and manifest["params_hash"]
    assert manifest["lineage"]["data"]["version"] and manifest["mlflow"]["run_id"]
    params = json.loads((first_run/"params.json").read_text())
    assert params["n_users"] == 400 and params["seed"] == 42
    for stage in STAGES:
        nb = stage.notebook_path()
        assert (first_run/"notebooks"/nb.name).is_file()
        html = (first_run/"html"/f"{nb.stem}.html").read_text()
        assert "<html" in html and f"<title>{stage.name} — run {first_run.name}</title>" in html
        assert "from fastcore.test import" not in html, "#| hide cells must not reach the HTML report"
        assert 'src="http' not in html, "the HTML report must load nothing from the network"
        for noise in ("INFO  [alembic", "without encryption", "Passed unknown parameter"):
            assert noise not in html, f"{nb.name}: library chatter in the report: {noise}"
    metrics = json.loads((first_run/"metrics.json").read_text())
    assert set(metrics) >= set(stage_names())


def test_report_files_are_readable_tables_come_as_csv_and_the_folder_has_an_index(first_run):
    index = (first_run/"index.html").read_text()
    assert first_run.name in index and "succeeded" in index
    for stage_page in sorted((first_run/"html").glob("*.html")):
        assert f'html/{stage_page.name}' in index
    assert 'href="documents/model_card_matcher.html"' in index and index.rindex("<h2>") == index.index("<h2>Did we meet the success criteria?</h2>")
    for f in [first_run/"metrics.json", first_run/"index.html", *sorted((first_run/"html").glob("*.html"))]:
        assert f.stat().st_mode & 0o044, f"{f} is readable only by its owner"
    parquet = sorted((first_run/"tables").glob("*.parquet"))
    assert parquet and all(p.with_suffix(".csv").is_file() for p in parquet)


def test_artifacts_are_hashed_in_the_manifest_and_checked_on_load(first_run, tmp_path):
    import shutil
    from thinkalike_ml.models import load_models
    from thinkalike_ml.runs import ArtifactError, RunDirectory
    manifest = json.loads((first_run/"manifest.json").read_text())
    hashed = manifest["artifacts"]
    assert any(k.endswith("matcher.pkl") for k in hashed) and any(k.endswith("user_transformer.pkl") for k in hashed)
    for rel, digest in hashed.items():
        assert hashlib.sha256((first_run/rel).read_bytes()).hexdigest() == digest, rel
    copy = tmp_path/first_run.name
    shutil.copytree(first_run, copy)
    model = next(k for k in hashed if k.endswith("matcher.pkl"))
    (copy/model).write_bytes((copy/model).read_bytes()[:-10])
    with pytest.raises(ArtifactError) as e: load_models(RunDirectory(copy))
    assert "matcher.pkl" in str(e.value) and "\n" not in str(e.value)


def test_executed_notebook_got_the_run_directory(first_run):
    import nbformat
    nb = nbformat.read(first_run/"notebooks"/"01_data.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and str(first_run) in injected[0].source


def test_monitoring_judges_windows_against_a_labelled_reference(first_run):
    """The default time split puts every held-out pair after the production start: the monitor's performance and fairness
    reference is then the validation split (never empty, as it was), its rows are not judged again, and the report says so."""
    import math
    import pandas as pd
    from thinkalike_ml.features import load_features
    from thinkalike_ml.monitoring import load_monitoring
    from thinkalike_ml.runs import RunDirectory
    run = RunDirectory(first_run)
    mon = load_monitoring(run)
    info, perf = mon["summary"], mon["performance"]
    ref = info["reference"]
    assert json.loads((first_run/"params.json").read_text())["matcher_split"] == "time"
    assert ref["source"] == "validation_split" and ref["rows"] == info["reference_performance"]["n"] > 0
    assert pd.Timestamp(ref["from"]) >= pd.Timestamp(info["start"]) and math.isfinite(info["reference_performance"]["roc_auc"])
    pf = load_features(run)["pair_features"]
    after = pf[pf["timestamp"] >= pd.Timestamp(info["start"])]
    assert ref["rows"] == int((pf["split"] == "validation").sum())
    # judged: test rows of labelled windows only (on the small profile the test rows' labels have not all arrived: maybe none)
    assert perf["n"].sum() <= int((after["split"] == "test").sum()), perf
    page = (first_run/"html"/"10_monitoring.html").read_text()
    assert f"{ref['rows']:,} rows, the matcher's validation split" in page and "No labelled window or no sensitive attribute" not in page
    assert "No labelled reference" not in page


def test_monitoring_a_later_file_judges_every_later_suggestion_against_the_runs_reference(first_run, tmp_path):
    """`monitoring_files`: a later export with drifted users passes the data stage's steps and is monitored against the run:
    its suggestions are judged in windows, the run's validation split is the reference, the drift is caught, and a window
    of a few rows is not called slow (the job's fixed cost per window is not a slow row)."""
    import shutil
    from thinkalike_ml.monitoring import load_monitoring
    from thinkalike_ml.runs import RunDirectory
    from thinkalike_ml.stages import execute_stage
    from thinkalike_ml.tracking import TRACKING_FILE
    copy, later = tmp_path/"run", tmp_path/"later"
    shutil.copytree(first_run, copy)
    (copy/TRACKING_FILE).unlink()  # untracked: the first run's MLflow record is left as it is
    (tmp_path/"later.yaml").write_text("seed: 7\ndata_drift: 1.0\n")
    cli("export-data", "--small", "--out", str(later), "--params", str(tmp_path/"later.yaml"), "--tables", "users,suggestions", check=0)
    run = RunDirectory(copy)
    execute_stage(run, "monitoring", {**run.params, "monitoring_files": {t: str(later/f"{t}.csv") for t in ("users", "suggestions")}})
    mon = load_monitoring(run)
    info, perf, system = mon["summary"], mon["performance"], mon["system"]
    assert info["source"].startswith("the later files") and info["matcher_monitored"]
    assert info["reference"]["rows"] == info["reference_performance"]["n"] > 0
    assert perf["n"].sum() > 0 and perf["roc_auc"].notna().any()
    kinds = {a["kind"] for a in mon["alerts"]}
    assert "data_drift" in kinds, mon["alerts"]
    small = system.loc[system["rows"] < run.params["min_group_size"], "window"]
    assert not any(a["kind"] == "system" and a["window"] in set(small) for a in mon["alerts"]), system


def test_second_run_is_a_new_folder_leaves_the_first_unchanged_and_agrees_with_it(first_run, reports):
    before = tree_digest(first_run)
    p = cli("run", "--small", "--no-progress", "--until", "splits", reports=reports, check=0)
    second = report_of(p)
    assert second != first_run and second.parent == first_run.parent
    assert tree_digest(first_run) == before
    assert json.loads((second/"params.json").read_text()) == json.loads((first_run/"params.json").read_text())
    m1, m2 = (without_timings(json.loads((r/"metrics.json").read_text())) for r in (first_run, second))
    assert {s: m1[s] for s in ("problem", "data", "splits")} == m2
    lineage = [json.loads((r/"manifest.json").read_text())["lineage"]["data"]["hash"] for r in (first_run, second)]
    assert lineage[0] == lineage[1]
    listing = " ".join(cli("list", reports=reports, check=0).stdout.split())
    assert f"{second.name} partial" in listing and f"{first_run.name} succeeded" in listing


def test_failing_stage_names_the_stage_and_is_listed_as_failed_with_the_reason(first_run, reports, tmp_path):
    bad = tmp_path/"users.csv"
    bad.write_text('user_id,name\n1,"unclosed\n')
    p = cli("run", "--small", "--no-progress", "-p", "source", "files", "-p", "files", f"{{users: {bad}}}", reports=reports)
    assert p.returncode == 1, p.stderr
    first_line = p.stderr.strip().splitlines()[0]
    assert first_line.startswith("error: stage 'data' failed: DataError:"), first_line
    assert "marked failed" in p.stderr
    failed = Path(p.stderr.strip().splitlines()[-1].split("partial report: ", 1)[1])
    manifest = json.loads((failed/"manifest.json").read_text())
    data = next(s for s in manifest["stages"] if s["name"] == "data")
    assert manifest["status"] == "failed" and data["status"] == "failed"
    assert "stage 'data'" in data["error"]
    assert (failed/"notebooks"/"01_data.ipynb").is_file() and (failed/"html"/"01_data.html").is_file()
    listing = cli("list", reports=reports, check=0).stdout
    assert f"{failed.name} failed" in " ".join(listing.split())
    assert "why: stage 'data' failed: DataError" in listing
    shown = cli("show", failed.name[:20], reports=reports, check=0).stdout
    assert f"run {failed.name}: failed" in shown and "DataError" in shown and "{" not in shown.splitlines()[0]
    raw = json.loads(cli("show", failed.name[:20], "--json", reports=reports, check=0).stdout)
    assert raw["manifest"]["status"] == "failed"


def test_show_summarises_a_run(first_run, reports):
    out = cli("show", first_run.name, reports=reports, check=0).stdout
    assert f"run {first_run.name}: succeeded" in out and "index.html" in out
    assert "models.matcher_test_roc_auc" in out and "dataset    version" in out
    assert "model      thinkalike-matcher version 1 (1.0.0)" in out and "upstream champion: none" in out  # the registry's lineage


def _start_run(reports: Path, *args) -> subprocess.Popen:
    return subprocess.Popen([CLI, "run", "--small", "--no-progress", "--reports-dir", str(reports), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for_stage(reports: Path, stage: str, timeout: float = 300) -> None:
    "Wait until the only run in `reports` is executing `stage`."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in reports.glob("*/manifest.json"):
            try: stages = json.loads(m.read_text())["stages"]
            except (json.JSONDecodeError, OSError): continue
            if any(s["name"] == stage and s["status"] == "running" for s in stages): return
        time.sleep(0.5)
    raise TimeoutError(f"stage '{stage}' did not start within {timeout} s")


def _interrupt_during_data(tmp_path, ctrl_c: int = 1):
    """Start a run up to splits, press Ctrl-C `ctrl_c` times (half a second apart) two seconds into the data stage; the process and its
    output. 20,000 users keep the data stage busy for several seconds (about 6 s on a fast machine), so the presses land in it."""
    proc = _start_run(tmp_path, "--until", "splits", "-p", "n_users", "20000")
    try:
        _wait_for_stage(tmp_path, "data")
        time.sleep(2)
        for i in range(ctrl_c):
            if i: time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None: os.killpg(proc.pid, signal.SIGKILL)
    return proc, out, err


def test_ctrl_c_stops_the_run_and_marks_it_interrupted(tmp_path):
    proc, out, err = _interrupt_during_data(tmp_path)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    manifest = json.loads((run/"manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert [s["status"] for s in manifest["stages"]][:2] in (["interrupted", "skipped"], ["succeeded", "interrupted"])
    assert " interrupted " in cli("list", reports=tmp_path, check=0).stdout


def test_a_ctrl_c_lost_between_a_cells_code_and_its_reply_still_stops_the_stage(tmp_path):
    """ipykernel swallows a SIGINT that lands after a cell's code but before its reply ("KeyboardInterrupt caught in kernel"): no
    reply comes and papermill would wait for ever. The cell below widens that window to 3 s; after its grace period the runner
    acts as on a second Ctrl-C (kills the kernel, stops), and the partial notebook (written at the end by the runner's engine) is kept."""
    import threading
    import nbformat
    import papermill as pm
    from thinkalike_ml.pipeline import RunInterrupted, StageKernel, _engine_name, _Interrupts
    slow_reply = ("k = get_ipython().kernel\norig = k.session.send\n"
                  "def send(stream, m, *a, **kw):\n    if m == 'execute_reply': __import__('time').sleep(3)\n    return orig(stream, m, *a, **kw)\n"
                  "k.session.send = send")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(slow_reply), nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, str(tmp_path/"in.ipynb"))
    with _Interrupts(grace=2.0) as interrupts, StageKernel() as kernel:
        km = interrupts.km = kernel.fresh(tmp_path)
        kc = km.client(); kc.start_channels(); kc.wait_for_ready(timeout=120); kc.stop_channels()  # the kernel is up before the clock starts
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()  # in the first cell's 3-s reply window
        t0 = time.monotonic()
        with pytest.raises(RunInterrupted):
            pm.execute_notebook(str(tmp_path/"in.ipynb"), str(tmp_path/"out.ipynb"), km=km, kernel_name="python3", language="python",
                                progress_bar=False, engine_name=_engine_name(), on_cell_execute=interrupts.stop_before_cell)
        assert time.monotonic() - t0 < 60 and interrupts.received == 2 and not km.is_alive()
    out = nbformat.read(str(tmp_path/"out.ipynb"), as_version=4)
    assert out.metadata.papermill["end_time"] and out.cells[1].execution_count is None  # written when it stopped; the second cell never ran


def test_the_stages_kernel_keeps_one_client_that_papermill_uses_and_a_fresh_namespace_per_stage(tmp_path):
    """Every new kernel client waits 0.2 s for the kernel's IOPub to go quiet: the run connects one and papermill executes every stage
    on it. Each stage still starts with an empty namespace, and a kernel that died gets a new client."""
    import nbformat
    import papermill as pm
    from thinkalike_ml.pipeline import StageKernel, _engine_name
    def stage(code, name):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(code)]
        nbformat.write(nb, str(tmp_path/f"{name}.ipynb"))
        return pm.execute_notebook(str(tmp_path/f"{name}.ipynb"), str(tmp_path/f"{name}.out.ipynb"), km=kernel.fresh(tmp_path), kc=kernel.client(),
                                   kernel_name="python3", language="python", progress_bar=False, engine_name=_engine_name())
    with StageKernel() as kernel:
        stage("x = 41", "one")
        kc = kernel.kc
        out = stage("print('x' in globals(), 1 + 1)", "two")
        assert kernel.kc is kc and kc.channels_running
        assert out.cells[0].outputs[0]["text"] == "False 2\n"
        kernel.km.shutdown_kernel(now=True)  # as a second Ctrl-C does
        out = stage("print('again')", "three")
        assert kernel.kc is not kc and not kc.channels_running and out.cells[0].outputs[0]["text"] == "again\n"
    assert kernel.kc is None and not kernel.km.has_kernel


def test_a_second_ctrl_c_kills_the_kernel_and_stops_the_run(tmp_path):
    proc, out, err = _interrupt_during_data(tmp_path, ctrl_c=2)
    assert proc.returncode == 130, err
    manifest = json.loads((next(p for p in tmp_path.iterdir() if p.is_dir())/"manifest.json").read_text())
    assert manifest["status"] == "interrupted"


def test_a_killed_run_is_listed_as_interrupted(tmp_path, reports, first_run):
    before = tree_digest(first_run)
    proc = _start_run(tmp_path, "--until", "splits")
    _wait_for_stage(tmp_path, "data")
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its kernel, as `kill -9 -PGID` would
    proc.wait(30)
    listing = cli("list", reports=tmp_path, check=0).stdout
    assert " interrupted " in listing and "killed?" in listing, listing
    assert tree_digest(first_run) == before


@pytest.mark.parametrize("args, message", [
    (["-p", "no_such_param", "1"], "unknown parameter 'no_such_param'"),
    (["-p", "sede", "1"], "did you mean 'seed'"),
    (["-p", "seed", "abc"], "parameter 'seed': expected an integer"),
    (["-p", "consent_rate", "2"], "out of range"),
    (["--params", "/no/such/params.yaml"], "does not exist"),
    (["--only", "modles"], "unknown stage 'modles'"),
    (["--until", "nope"], "unknown stage 'nope'"),
    (["-p", "source", "files", "-p", "files", "{users: no/such/users.csv}"], "files['users']: file 'no/such/users.csv' does not exist"),
    (["-p", "withdrawn_ids_file", "no/such/ids.txt"], "withdrawn_ids_file: file 'no/such/ids.txt' does not exist"),
])
def test_bad_input_fails_before_any_stage(args, message, tmp_path):
    reports = tmp_path/"reports"
    p = cli("run", "--small", *args, reports=reports)
    assert p.returncode == 2 and message in p.stderr, p.stderr
    assert p.stderr.startswith("error: ")
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


THROWAWAY_MODULE = '''
def run_echo_stage(run, params):
    "A throwaway stage: counts what the data stage made."
    from thinkalike_ml.data import load_dataset
    return {"echoed_users": len(load_dataset(run)["users"]), "seed_seen": params["seed"]}
'''


def test_adding_a_stage_is_one_notebook_and_one_declaration(tmp_path, monkeypatch):
    "A throwaway stage, declared once, runs in the pipeline, is selectable, listed and in the README table.\n\n"
    "In the run it shares the data stage's kernel yet sees none of its names, and its inline checks are left out."
    import nbformat
    from thinkalike_ml.pipeline import format_runs, run_pipeline
    from thinkalike_ml.runs import read_index
    from thinkalike_ml.stages import Stage, select_stages, stage, stage_table
    (tmp_path/"echo_stage.py").write_text(THROWAWAY_MODULE)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.syspath_prepend(str(tmp_path))
    v4 = nbformat.v4
    params_cell = v4.new_code_cell("run_dir = None\noverrides = {}")
    params_cell.metadata["tags"] = ["parameters"]
    nb = v4.new_notebook(cells=[
        v4.new_markdown_cell("# Echo\n> A throwaway stage."), params_cell,
        v4.new_code_cell("raise AssertionError('an inline check ran in a pipeline run')"),
        v4.new_markdown_cell("## Run the stage"),
        v4.new_code_cell("assert not {'metrics', 'run', 'params', 'load_dataset'} & set(globals()), 'names of the data stage leaked'"),
        v4.new_code_cell("from thinkalike_ml.stages import open_stage, execute_stage, STAGES, Stage\n"
                         "ECHO = Stage('echo', 'echo', 'echo_stage', 'echoes', runner='run_echo_stage', params=('seed',), headline=('echoed_users',))\n"
                         "run, params = open_stage(run_dir, 'echo', stages=[*STAGES, ECHO])\n"
                         "metrics = execute_stage(run, 'echo', params, stages=[*STAGES, ECHO])"),
        v4.new_markdown_cell("## Results"), v4.new_code_cell("metrics")])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(nb, tmp_path/"99_echo.ipynb")
    echo = Stage("echo", str(tmp_path/"99_echo.ipynb"), "echo_stage", "echoes the user count", runner="run_echo_stage",
                 params=("seed",), headline=("echoed_users",))
    stages = [stage("data"), echo]
    assert [s.name for s in select_stages(only="echo", stages=stages)] == ["echo"]
    assert "| echo | `99_echo` | `echo_stage` | echoes the user count |" in stage_table(stages)
    run = run_pipeline(small=True, overrides={"n_users": 60}, reports_dir=tmp_path/"reports", progress=False, stages=stages)
    assert run.metrics()["echo"]["echoed_users"] == run.metrics()["data"]["n_users"] > 0
    assert (run.path/"html"/"99_echo.html").is_file() and "html/99_echo.html" in (run.path/"index.html").read_text()
    assert read_index(tmp_path/"reports")[0]["stages"] == ["data", "echo"]
    assert nbformat.read(run.path/"notebooks"/"99_echo.ipynb", as_version=4).metadata["thinkalike"]["inline_checks_left_out"] == 1
    assert "echo.echoed_users=" in format_runs(read_index(tmp_path/"reports"), stages)


@pytest.mark.slow
def test_two_runs_with_the_same_parameters_agree(first_run, reports):
    "Every metric (timings aside) and the dataset hash are the same in a second complete run."
    second = report_of(cli("run", "--small", "--no-progress", reports=reports, check=0))
    m1, m2 = (without_timings(json.loads((r/"metrics.json").read_text())) for r in (first_run, second))
    assert m1 == m2
    assert verdicts_without_latency(first_run) == verdicts_without_latency(second)
    h = [json.loads((r/"manifest.json").read_text())["lineage"]["data"]["hash"] for r in (first_run, second)]
    assert h[0] == h[1]


@pytest.mark.slow
def test_movietweetings_runs_the_whole_lifecycle(reports):
    """The README's real-data run, `-p source movietweetings`, succeeds in every stage (its monitoring stage once failed
    on the empty drift table of a run with no suggestions): the recommender is monitored, the matcher is not."""
    run = report_of(cli("run", "-p", "source", "movietweetings", "--no-progress", reports=reports, check=0))
    manifest, metrics = (json.loads((run/f).read_text()) for f in ("manifest.json", "metrics.json"))
    assert manifest["status"] == "succeeded" and len(manifest["stages"]) == 12, manifest["stages"]
    mon = metrics["monitoring"]
    assert mon["matcher_monitored"] == 0.0 and mon["labelled_windows"] > 0 and 0 < mon["recommender_reference_ndcg"] < 1
    assert metrics["documents"]["documents"] > 0


@pytest.mark.slow
def test_own_files_without_interactions_run_the_whole_lifecycle(reports, tmp_path):
    """Own files with users and suggestions only (no interactions, so no recommender): every stage succeeds (the registry
    and serving stages once assumed a recommender); the API serves the matcher and answers 404 for recommendations."""
    out = tmp_path/"files"
    cli("export-data", "--small", "--out", str(out), "--tables", "users,suggestions", check=0)
    run = report_of(cli("run", "--params", str(out/"params.yaml"), "--small", "--no-progress", reports=reports, check=0))
    manifest, metrics = (json.loads((run/f).read_text()) for f in ("manifest.json", "metrics.json"))
    assert manifest["status"] == "succeeded" and len(manifest["stages"]) == 12, manifest["stages"]
    assert metrics["serving"]["matcher_skipped"] == 0.0 and "api_recommend_p95_seconds" not in metrics["serving"]
    assert "recommender_registry_version" not in metrics["registry"] and metrics["registry"]["matcher_registry_version"] >= 1
    assert metrics["monitoring"]["matcher_monitored"] == 1.0
    from thinkalike_ml.serving import running_server
    import httpx
    with running_server(str(run)) as (base, _):
        r = httpx.post(base + "/v1/recommend", json={"user_id": "x"})
        assert r.status_code == 404 and "no recommender" in r.text


@pytest.mark.slow
def test_a_real_runs_pages_show_results_on_the_first_screen(first_run, tmp_path):
    "The run's index.html and every stage report, in headless Chromium at 1280x800: results first, no code on screen."
    from helpers import offline_page, served
    visible_inputs = """() => [...document.querySelectorAll('.jp-InputArea-editor')].filter(e => e.checkVisibility())
                                  .map(e => e.getBoundingClientRect().top).filter(t => t < 800)"""
    with served(first_run) as base, offline_page(base) as (page, outside):
        page.goto(f"{base}/index.html", wait_until="load")
        page.screenshot(path=str(tmp_path/"index.png"))
        assert first_run.name in page.title() + page.inner_text("body")
        links = page.eval_on_selector_all("a[href^='html/']", "els => els.map(e => e.getAttribute('href'))")
        assert len(links) == len(list((first_run/"html").glob("*.html"))) > 0
        for href in links:
            page.goto(f"{base}/{href}", wait_until="load")
            page.screenshot(path=str(tmp_path/(Path(href).stem + ".png")))
            top = page.locator("h2#Results").bounding_box()["y"]
            assert 0 <= top < 800, f"{href}: the Results section starts at {top}px, below the first screen"
            assert page.evaluate(visible_inputs) == [], f"{href}: code on the first screen"
    assert outside == [], f"requests outside 127.0.0.1: {outside}"
    assert all(f.stat().st_size > 5000 for f in tmp_path.glob("*.png"))
