"""Run reports: a small stage-like notebook executed with nbclient, rendered, and checked as HTML and in headless Chromium.

The notebook has what a stage has (title cell, `#| default_exp`, a `parameters` cell and papermill's
`injected-parameters` cell, a `#| hide` cell, an export with its inline test and `show_doc`,
"## Run the stage" with printed output, stderr noise, math, a figure and a table, then "## Results"),
so every rule of the report is exercised without running the pipeline.
"""
import re

import nbformat
import pytest
from nbclient import NotebookClient

from helpers import offline_page, served
from thinkalike_ml.reports import render_stage_html, run_index_html

v4 = nbformat.v4
TITLE = "toy — run 20261127T101500Z-ab12cd"
HIDDEN_MARK = "HIDDEN_CELL_MUST_NOT_APPEAR"
PARAM_MARK = "PARAMETERS_CELL_MUST_NOT_APPEAR"
RUN_INPUT_MARK = "RUN_INPUT_MUST_NOT_APPEAR"
NOISE = ("2026/11/27 09:35:32 INFO mlflow.store.db.utils: Creating initial MLflow database tables...\n"
         "/x/.venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found. Please update jupyter and ipywidgets.\n"
         "  from .autonotebook import tqdm as notebook_tqdm\n")


def tagged(source: str, tag: str):
    return v4.new_code_cell(source, metadata={"tags": [tag]})


def stage_like_notebook(reports_dir) -> nbformat.NotebookNode:
    "A notebook shaped like a stage notebook, writing its run into `reports_dir`."
    nb = v4.new_notebook(cells=[
        v4.new_markdown_cell("# Toy stage\n> A toy stage that doubles numbers, for testing reports."),
        v4.new_code_cell("#| default_exp toy"),
        v4.new_markdown_cell("The toy computes $y = 2x$ for every $x$."),
        tagged(f"reports_dir = None\n{PARAM_MARK} = 1", "parameters"),
        tagged(f"reports_dir = {str(reports_dir)!r}", "injected-parameters"),
        v4.new_code_cell(f"#| hide\nfrom fastcore.test import test_eq\nfrom nbdev.showdoc import show_doc\n{HIDDEN_MARK} = 1"),
        v4.new_code_cell('#| export\ndef double_it(x):\n    "Twice `x`."\n    return 2 * x'),
        v4.new_code_cell("test_eq(double_it(2), 4)"),
        v4.new_code_cell("show_doc(double_it)"),
        v4.new_markdown_cell("## Run the stage"),
        v4.new_code_cell("import sys\nimport matplotlib.pyplot as plt\nimport pandas as pd\n"
                         "from thinkalike_ml.runs import RunDirectory\nfrom thinkalike_ml.reports import figure, results, table\n"
                         "run = RunDirectory.create({'seed': 1}, reports_dir)"),
        v4.new_code_cell(f"{RUN_INPUT_MARK} = 'RUN_' + 'OUTPUT_MARK'\nprint({RUN_INPUT_MARK})\n"
                         f"print({NOISE!r}, end='', file=sys.stderr)\nprint('REAL_' + 'STDERR_MARK', file=sys.stderr)"),
        v4.new_markdown_cell("A toy costs $5 or $10, `$HOME` stays as written, and\n\n$$\\sum_{i=1}^n 2i = n(n+1)$$"),
        v4.new_code_cell("fig, ax = plt.subplots(figsize=(4, 2))\nax.plot([0, 1, 2], [0, 2, 4])\n"
                         "figure(run, 'toy', fig, 'Doubling is linear')"),
        v4.new_code_cell("table(pd.DataFrame({'x': [1, 2], 'doubled': [2.0, 4.123456]}), 'Doubled values', precision=2)"),
        v4.new_markdown_cell("## Results"),
        v4.new_code_cell("results({'double_of_two': double_it(2), 'ratio': 2 / 3}, note='The toy doubles exactly.')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    "The stage-like notebook executed, written and rendered: (page, folder with the run)."
    tmp = tmp_path_factory.mktemp("reports")
    nb = stage_like_notebook(tmp/"runs")
    NotebookClient(nb, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(tmp)}}).execute()
    nbformat.write(nb, tmp/"02_toy.ipynb")
    page = render_stage_html(tmp/"02_toy.ipynb", TITLE)
    (tmp/"02_toy.html").write_text(page, encoding="utf-8")
    return page, tmp


def network_refs(page: str) -> list[str]:
    "Scripts, stylesheets, imports or media that a page would load from the network."
    return re.findall(r"""(?i)<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//[^\s"'>]*"""
                      r"""|url\(\s*["']?(?:https?:)?//[^)]*|@import[^;]*|\bimport\s*\(\s*["'](?:https?:)?//[^"']*""", page)


def test_page_has_the_given_title(rendered):
    page, _ = rendered
    assert "<title>toy — run 20261127T101500Z-ab12cd</title>" in page
    assert "<title>Notebook</title>" not in page


def test_title_then_results_then_run_then_folded_definitions(rendered):
    page, _ = rendered
    pos = [page.index(s) for s in ['id="Toy-stage"', 'id="Results"', "double_of_two", 'id="Run-the-stage"', "RUN_OUTPUT_MARK",
                                   "Doubled values", '<details class="report-fold"', "How this stage works: definitions and inline tests",
                                   "double_it"]]
    assert pos == sorted(pos), pos
    assert page.count("<details") == 1 and page.index("The toy computes") > page.index("<details")


def test_run_and_results_inputs_are_hidden_definitions_are_shown(rendered):
    page, _ = rendered
    run_part, folded = page.split('<details class="report-fold"')
    assert RUN_INPUT_MARK not in page and "RUN_OUTPUT_MARK" in run_part
    assert "jp-InputArea-editor\" data-type" not in run_part, "no code input above the definitions"
    assert folded.count("jp-InputArea-editor\" data-type") == 2  # the export and its inline test, with their code
    assert "test_eq" in folded and "#| export" in folded


def test_hide_parameters_and_show_doc_cells_are_dropped(rendered):
    page, _ = rendered
    assert HIDDEN_MARK not in page and PARAM_MARK not in page
    assert "reports_dir" not in page, "papermill's injected-parameters cell must not reach the report"
    assert "show_doc" not in page and "default_exp" not in page


def test_known_stderr_noise_is_dropped_real_stderr_is_kept(rendered):
    page, _ = rendered
    assert "Creating initial MLflow database tables" not in page and "IProgress" not in page and "autonotebook" not in page
    assert "REAL_STDERR_MARK" in page


def test_math_becomes_mathml_prices_and_code_stay(rendered):
    page, _ = rendered
    assert page.count("<math") == 3 and '<math display="block">' in page
    assert "costs $5 or $10" in page and "<code>$HOME</code>" in page
    assert "MathJax" not in page and "$$" not in page


def test_no_network_references(rendered):
    page, _ = rendered
    assert network_refs(page) == [], network_refs(page)
    assert "<script" not in page


def test_network_refs_finds_what_it_should():
    "The check above would notice a CDN script, stylesheet or module import."
    page = ('<script src="https://cdn.example/require.js"></script><link rel="stylesheet" href="//cdn.example/a.css">'
            '<script type="module">await import("https://cdn.example/mermaid.mjs")</script><a href="https://example.org">ok</a>')
    assert len(network_refs(page)) == 3


def test_figure_is_saved_and_embedded_once(rendered):
    page, tmp = rendered
    assert [p.name for p in (tmp/"runs").glob("*/figures/*.png")] == ["toy.png"]
    assert page.count("<img") == 1, "the figure shows once: embedded by figure(), not again by the inline backend"
    assert re.search(r'<figure class="report-figure"><img [^>]*src="data:image/png;base64,iVBOR', page)
    assert "<figcaption>Doubling is linear</figcaption>" in page


def test_table_and_results_are_formatted(rendered):
    page, _ = rendered
    assert "Doubled values" in page and "4.12" in page and "4.123456" not in page
    assert "<strong>ratio</strong>: 0.6667" in page and "The toy doubles exactly." in page


def test_an_error_is_shown_with_its_code(tmp_path):
    "A run cell that raised keeps its input and its error; a definitions cell that raised opens the fold."
    def failing(source, ename, evalue):
        return v4.new_code_cell(source, outputs=[v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])])
    title, run = v4.new_markdown_cell("# T"), v4.new_markdown_cell("## Run the stage")
    nbformat.write(v4.new_notebook(cells=[title, run, failing("raise ValueError('boom')", "ValueError", "boom")]), tmp_path/"a.ipynb")
    page = render_stage_html(tmp_path/"a.ipynb", "failed in the run")
    assert "ValueError: boom" in page and '<span class="k">raise</span>' in page and "<details" not in page
    nbformat.write(v4.new_notebook(cells=[title, failing("#| export\n1/0", "ZeroDivisionError", "division by zero"), run]),
                   tmp_path/"b.ipynb")
    page = render_stage_html(tmp_path/"b.ipynb", "failed in a definition")
    assert "ZeroDivisionError: division by zero" in page and '<details class="report-fold" open' in page


def test_a_notebook_without_the_headings_renders_in_order(tmp_path):
    "No '## Results' or '## Run the stage': every cell in its order, exported code folded, nothing crashes."
    nb = v4.new_notebook(cells=[
        v4.new_markdown_cell("# Plain\n> No stage headings."), v4.new_code_cell("#| export\nFIRST_EXPORT = 1"),
        v4.new_markdown_cell("Some prose in the middle."),
        v4.new_code_cell("print('shown')", outputs=[v4.new_output("stream", name="stdout", text="shown\n")])])
    nbformat.write(nb, tmp_path/"plain.ipynb")
    page = render_stage_html(tmp_path/"plain.ipynb", "plain")
    pos = [page.index(s) for s in ['id="Plain"', '<details class="report-code"', "FIRST_EXPORT", "Some prose", "<pre>shown"]]
    assert pos == sorted(pos)
    nbformat.write(v4.new_notebook(cells=[]), tmp_path/"empty.ipynb")
    assert "<title>empty</title>" in render_stage_html(tmp_path/"empty.ipynb", "empty")


def test_run_index_page(tmp_path):
    "The index shows the run, stages with links to existing pages, metrics to 4 digits, parameters, lineage and files, all escaped."
    (tmp_path/"html").mkdir()
    (tmp_path/"html"/"02_splits.html").write_text("<html></html>")
    for name in ["params.json", "manifest.json", "datasheet.md"]: (tmp_path/name).write_text("{}")
    manifest = {"run_id": "20261127T101500Z-ab12cd", "status": "failed", "started": "2026-11-27T10:15:00+00:00", "duration_s": 42.0,
                "code": {"commit": "0123abcd", "dirty": True}, "lineage": {"data": {"version": "data-v7"}},
                "stages": [{"name": "splits", "status": "succeeded", "duration_s": 1.5, "error": None},
                           {"name": "models", "status": "failed", "duration_s": 2.25, "error": "stage 'models' failed: ValueError: <bad>"}]}
    metrics = {"splits": {"suggestions_train_rows": 700, "suggestions_train_positive_rate": 0.123456789, "ok": True, "label": "x"},
               "models": {}}
    params = {"seed": 42, "title": "<script>alert(1)</script>", "grid": [1, 2]}
    page = run_index_html(tmp_path, manifest, metrics, params,
                          [("splits", "Train / test splits", "html/02_splits.html"), ("models", "Models", "html/04_models.html")])
    for s in ["<title>Run 20261127T101500Z-ab12cd</title>", "failed", "ValueError: &lt;bad&gt;", "0123abcd", "uncommitted",
              "data-v7", '<a href="html/02_splits.html">', "Train / test splits", "1.5 s", "suggestions_train_rows", ">700<",
              ">0.1235<", "&lt;script&gt;alert(1)&lt;/script&gt;", "[1, 2]", '<a href="params.json">', '<a href="manifest.json">',
              '<a href="datasheet.md">']:
        assert s in page, s
    assert "04_models.html" not in page, "a stage page that does not exist is not linked"
    assert "metrics.json" not in page and ">label<" not in page and "<script>" not in page
    assert network_refs(page) == []


@pytest.mark.slow
def test_first_screen_shows_results_not_code(rendered, tmp_path):
    "In headless Chromium at 1280x800 the Results heading is on the first screen and no code input is above it."
    page_html, folder = rendered
    with served(folder) as base, offline_page(base) as (page, outside):
        page.goto(f"{base}/02_toy.html", wait_until="load")
        page.screenshot(path=str(tmp_path/"first_screen.png"))
        assert page.title() == TITLE
        top = page.locator("h2#Results").bounding_box()["y"]
        assert 0 <= top < 800, f"the Results heading starts at {top}px, below the first screen"
        inputs_js = """() => [...document.querySelectorAll('.jp-InputArea-editor')]
                             .filter(e => e.checkVisibility()).map(e => e.getBoundingClientRect().top)"""
        assert page.evaluate(inputs_js) == [], "no code input is visible while the definitions are folded"
        assert page.evaluate("document.querySelector('math').getBoundingClientRect().width") > 0
        page.click("details.report-fold > summary")
        shown = page.evaluate(inputs_js)
        assert shown and min(shown) > top, f"code inputs at {shown} must all be below the Results heading at {top}"
    assert (tmp_path/"first_screen.png").stat().st_size > 5000
    assert outside == [], f"requests outside 127.0.0.1: {outside}"
