"""The notebooks and the library agree: clean notebooks, no export diff, one parameters cell per stage."""
import ast
import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from thinkalike_ml.pipeline import NOTEBOOK_PARAMETERS, notebook_parameters
from thinkalike_ml.stages import STAGES, stage

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_notebooks_are_clean_and_the_library_is_their_export(tmp_path):
    "nbdev_clean and nbdev_export on a copy of the project change nothing."
    copy = tmp_path/"proj"
    copy.mkdir()
    for name in ["settings.ini", "setup.py", "nbs", "thinkalike_ml"]:
        src = ROOT/name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, copy/name)
    for tool in ["nbdev_clean", "nbdev_export"]:
        subprocess.run([str(BIN/tool)], cwd=copy, check=True, capture_output=True, timeout=300)
    changed = []
    for folder in ["nbs", "thinkalike_ml"]:
        for f in sorted((ROOT/folder).rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts and ".ipynb_checkpoints" not in f.parts:
                g = copy/f.relative_to(ROOT)
                if not g.exists() or not filecmp.cmp(f, g, shallow=False): changed.append(str(f.relative_to(ROOT)))
        new = {p.relative_to(copy) for p in (copy/folder).rglob("*.py")} - {p.relative_to(ROOT) for p in (ROOT/folder).rglob("*.py")}
        changed += [f"(new) {p}" for p in new]
    assert not changed, f"run `make export` and commit: these differ from their clean/exported form: {changed}"


@pytest.mark.parametrize("nb_path", sorted((ROOT/"nbs").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(nb_path):
    "Outputs are made by runs and the docs build; committed ones would go stale (and could leak data)."
    nb = nbformat.read(nb_path, as_version=4)
    with_outputs = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.outputs]
    assert not with_outputs, f"{nb_path.name}: cells {with_outputs} have outputs; run `make export`"


@pytest.mark.parametrize("name", [s.name for s in STAGES])
def test_stage_notebook_has_one_parameters_cell_that_repeats_no_run_parameter(name):
    "Run parameters live in the run (params.json); a stage's parameters cell only says where the run is."
    nb_path = stage(name).notebook_path()
    names = notebook_parameters(nb_path)  # exactly one tagged cell, run_dir, nothing else
    nb = nbformat.read(nb_path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    values = {t.id: ast.literal_eval(n.value) for n in ast.parse(cell.source).body if isinstance(n, ast.Assign)
              for t in n.targets}
    assert values == {"run_dir": None, "overrides": {}} and set(names) == set(NOTEBOOK_PARAMETERS)


def test_the_run_directory_passed_by_papermill_decides_the_stage_output(tmp_path):
    "Guards against a lost `parameters` tag: the run's parameters, not the small profile, must reach the stage."
    import papermill as pm
    from thinkalike_ml.config import PARAMS, resolve_params
    from thinkalike_ml.data import load_dataset
    from thinkalike_ml.runs import RunDirectory
    params = resolve_params(overrides={"n_users": 60}, small=True)
    run = RunDirectory.create(params, tmp_path/"reports")
    nb = stage("data").notebook_path()
    pm.execute_notebook(str(nb), str(tmp_path/"out.ipynb"), parameters={"run_dir": str(run.path)},
                        kernel_name="python3", language="python", progress_bar=False, cwd=str(nb.parent))
    assert 0 < len(load_dataset(run)["users"]) <= 60 < PARAMS["n_users"].value(small=True)


def test_readme_is_generated_from_the_index_notebook():
    p = subprocess.run([sys.executable, str(ROOT/"tools"/"readme.py"), "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"README.md is out of date with nbs/index.ipynb; run `make readme`\n{p.stdout}{p.stderr}"
