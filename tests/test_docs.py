"""The documentation site: built offline from the notebooks, served from 127.0.0.1, checked in headless Chromium.

The build runs on a temporary copy of nbs/ plus a throwaway notebook with a plot, math, a hidden
cell and an `echo: false` cell, so that those paths are exercised whatever the stages show.
"""
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import nbformat
import pytest
import requests

from helpers import CHROMIUM_ARGS, free_port, require_chromium, start_server, stop_server, wait_http

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from docsite import find_notebooks, page_name  # noqa: E402

pytestmark = pytest.mark.slow  # the docs site: builds every notebook and drives Chromium

CHECK_NB = "99_docsite_check.ipynb"  # the throwaway notebook; its page is `docsite_check`
HIDDEN_MARK = "HIDDEN_CELL_MUST_NOT_APPEAR"
ECHO_MARK = "ECHO_FALSE_INPUT_MUST_NOT_APPEAR"


def check_notebook() -> nbformat.NotebookNode:
    """A small notebook with a plot, math, a show_doc, a `#| hide` cell and an `#| echo: false` cell."""
    v4 = nbformat.v4
    nb = v4.new_notebook(cells=[
        v4.new_markdown_cell("# Docs check\n> A throwaway notebook: plots, math and links render offline."),
        v4.new_markdown_cell("Euler: $e^{i\\pi} + 1 = 0$, and `resolve_params` is linked.\n\n$$\\sum_{i=1}^n i = \\frac{n(n+1)}{2}$$"),
        v4.new_code_cell(f"#| hide\nimport matplotlib.pyplot as plt\n{HIDDEN_MARK} = 1"),
        v4.new_code_cell("from nbdev.showdoc import show_doc\nfrom thinkalike_ml.config import resolve_params"),
        v4.new_code_cell("show_doc(resolve_params)"),
        v4.new_code_cell(f"#| echo: false\n{ECHO_MARK} = 2\nfig, ax = plt.subplots(figsize=(3, 2))\n"
                         "ax.plot([0, 1, 2], [0, 1, 4]);\nplt.show()"),
        v4.new_code_cell("print('visible output')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def run_builder(nbs: Path, out: Path, work: Path, timeout=900) -> subprocess.CompletedProcess:
    """Run `tools/docsite.py build` with the venv's python as a subprocess."""
    return subprocess.run([sys.executable, str(ROOT / "tools" / "docsite.py"), "build", "--nbs", str(nbs),
                           "--out", str(out), "--work", str(work)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built from a copy of nbs/ plus the check notebook; returns (site folder, page names)."""
    tmp = tmp_path_factory.mktemp("docs")
    nbs = tmp / "nbs"
    shutil.copytree(ROOT / "nbs", nbs, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    nbformat.write(check_notebook(), nbs / CHECK_NB)
    r = run_builder(nbs, tmp / "site", tmp / "work")
    assert r.returncode == 0, f"docs build failed (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    return tmp / "site", [page_name(p) for p in find_notebooks(nbs)]


@pytest.fixture(scope="module")
def server(site):
    """`python -m http.server` on a free 127.0.0.1 port serving the site; stopped afterwards."""
    folder, _ = site
    port = free_port()
    proc = start_server([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                         "--directory", str(folder)], folder.parent / "http.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/index.html", timeout=20, proc=proc)
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by playwright."""
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        try: yield b
        finally: b.close()


class Visit:
    """A browser context that records console errors and blocks (and records) every request off 127.0.0.1."""

    def __init__(self, browser):
        self.context = browser.new_context()
        self.outside, self.errors, self.failed = [], [], []
        self.context.route("**/*", self._route)

    def _route(self, route):
        url = route.request.url
        if urlparse(url).scheme in ("http", "https", "ws", "wss") and urlparse(url).hostname != "127.0.0.1":
            self.outside.append(url)
            return route.abort()
        return route.continue_()

    def open(self, url):
        """Open `url` in a new page; return (page, response)."""
        page = self.context.new_page()
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"{url}: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"{url}: {e}"))
        page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.url}: HTTP {r.status}"))
        response = page.goto(url, wait_until="load")
        page.wait_for_load_state("networkidle")
        return page, response


@pytest.fixture
def visit(browser):
    """A fresh recording browser context for each test."""
    v = Visit(browser)
    try: yield v
    finally: v.context.close()


class Links(HTMLParser):
    """Collects the `href` of every <a> and every `id` of an HTML page."""

    def __init__(self):
        super().__init__()
        self.hrefs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"): self.hrefs.append(a["href"])
        if a.get("id"): self.ids.add(a["id"])


def parse(html: str) -> Links:
    """The links and ids of a page."""
    p = Links()
    p.feed(html)
    return p


def test_chromium_is_installed():
    """The browser tests need Debian's chromium (`make setup-test` installs it): missing, this fails, never skips."""
    assert require_chromium().exists()


def test_a_failing_notebook_fails_the_build_with_its_name(tmp_path):
    """A notebook that raises stops the build, and the message names it."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Broken"),
                                         nbformat.v4.new_code_cell("raise ValueError('boom in docs')")])
    nbformat.write(nb, nbs / "05_broken.ipynb")
    r = run_builder(nbs, tmp_path / "site", tmp_path / "work", timeout=300)
    assert r.returncode != 0
    assert "05_broken.ipynb" in r.stderr and "boom in docs" in r.stderr, r.stderr[-3000:]
    assert not (tmp_path / "site").exists()


def test_every_stage_page_loads_offline(site, server, visit):
    """The home page, every notebook's page and the API reference load with a title, no console error, no outside request."""
    _, pages = site
    for name in ["index"] + [p for p in pages if p != "index"] + ["api/index"]:
        page, response = visit.open(urljoin(server, f"{name}.html"))
        assert response.status == 200, f"{name}.html: HTTP {response.status}"
        assert page.title().strip(), f"{name}.html has no title"
        assert page.locator("h1").count() >= 1, f"{name}.html has no H1"
        page.close()
    assert not visit.errors, f"console errors: {visit.errors}"
    assert not visit.outside, f"requests outside 127.0.0.1: {visit.outside}"
    assert not visit.failed, f"resources that failed to load: {visit.failed}"


def test_every_internal_link_resolves(site, server):
    """Crawl every <a href> of the site from the home page: each target answers 200 and each #anchor exists."""
    todo, seen, broken, ids = [urljoin(server, "index.html")], set(), [], {}
    anchors = []  # (page that links, target page, fragment)
    while todo:
        url = todo.pop()
        if url in seen: continue
        seen.add(url)
        r = requests.get(url, timeout=10)
        if r.status_code != 200:
            broken.append(f"{url}: HTTP {r.status_code}")
            continue
        if "text/html" not in r.headers.get("content-type", ""): continue
        links = parse(r.text)
        ids[url] = links.ids
        for href in links.hrefs:
            target, frag = urldefrag(urljoin(url, href))
            if not target.startswith(server): continue  # outside links are not followed (no request is made)
            if frag: anchors.append((url, target, frag))
            todo.append(target)
    assert not broken, f"broken internal links: {broken}"
    missing = [f"{src} -> {t}#{f}" for src, t, f in anchors if t in ids and f not in ids[t]]
    assert not missing, f"links to anchors that do not exist: {missing[:20]}"
    assert len(seen) > 5


def test_plots_math_and_directives_render(site, server, visit):
    """An executed plot shows as an image, MathJax renders from the site itself, hidden/echo-false inputs stay out."""
    page, response = visit.open(urljoin(server, "docsite_check.html"))
    assert response.status == 200
    widths = page.eval_on_selector_all("img[src*='_images/']", "imgs => imgs.map(i => i.naturalWidth)")
    assert widths and all(w > 0 for w in widths), f"plot images missing or broken: {widths}"
    page.wait_for_selector("mjx-container", timeout=15000)
    scripts = page.eval_on_selector_all("script[src]", "s => s.map(x => x.src)")
    assert any("_static/mathjax/tex-mml-chtml.js" in s for s in scripts), scripts
    html = page.content()
    assert HIDDEN_MARK not in html and ECHO_MARK not in html
    assert "visible output" in html
    assert page.locator("h2#resolve-params, section#resolve-params, [id='resolve-params']").count() >= 1, \
        "show_doc(resolve_params) did not render as a section"
    page.close()
    assert not visit.errors, f"console errors: {visit.errors}"
    assert not visit.outside, f"requests outside 127.0.0.1: {visit.outside}"
    assert not visit.failed, f"resources that failed to load (MathJax fonts?): {visit.failed}"


def test_a_stage_page_shows_an_executed_plot_somewhere(site, server, visit):
    """At least one page shows an image from an executed notebook output, with naturalWidth > 0."""
    _, pages = site
    shown = []
    for name in pages:
        page, _ = visit.open(urljoin(server, f"{name}.html"))
        widths = page.eval_on_selector_all("img[src*='_images/']", "imgs => imgs.map(i => i.naturalWidth)")
        shown += [(name, w) for w in widths]
        page.close()
    assert any(w > 0 for _, w in shown), "no page shows a plot image"
    assert all(w > 0 for _, w in shown), f"broken images: {[s for s in shown if s[1] == 0]}"


def test_readme_is_written_from_the_index_notebook(tmp_path):
    """tools/readme.py: markdown as-is, code as ```python, hidden cells and front matter dropped, clear error without index."""
    v4 = nbformat.v4
    nb = v4.new_notebook(cells=[
        nbformat.v4.new_raw_cell("---\ntitle: From front matter\ndescription: A summary\n---"),
        v4.new_markdown_cell("Some *prose*."),
        v4.new_code_cell("#| hide\nsecret = 1"),
        v4.new_code_cell("#| export\ndef f(): pass"),
        v4.new_code_cell("#| eval: false\nfrom thinkalike_ml.config import defaults\ndefaults()"),
    ])
    nbformat.write(nb, tmp_path / "index.ipynb")
    out = tmp_path / "README.md"
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "readme.py"), "--nb", str(tmp_path / "index.ipynb"),
                        "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    md = out.read_text()
    assert "# From front matter\n\n> A summary\n\nSome *prose*." in md
    assert "```python\nfrom thinkalike_ml.config import defaults\ndefaults()\n```" in md
    assert "secret" not in md and "def f" not in md and "#|" not in md and "---" not in md
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "readme.py"), "--nb", str(tmp_path / "missing.ipynb"),
                        "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "missing.ipynb does not exist" in r.stderr
