#!/usr/bin/env python
"""Build the documentation site offline from the notebooks (a dev tool, not part of the library).

    python tools/docsite.py build [--out _docs] [--nbs nbs] [--work _build/docsite] [--jobs 2]
                                  [--cache _build/docsite-executed | --no-cache] [--no-strict]
    python tools/docsite.py serve [--out _docs] [--port 8000]          (http.server on 127.0.0.1)
    python tools/docsite.py readme [--nbs nbs] [--out README.md]      (same as tools/readme.py)

Steps of `build` (Quarto is unavailable, see ../shared/STACK.md):
1. copy the notebooks to a sandbox (work folder with settings.ini, so runs land there) and execute
   each (nbclient, kernel `thinkalike-ml` if registered, else the venv's python; cwd = the copied
   folder; OMP_NUM_THREADS=1); a notebook that raises fails the build, naming it. Executions are
   cached by content (notebook cells, library source, settings.ini, data/): unchanged ones are reused;
2. run nbdev's own processors on each executed notebook (`#| hide`/`#| export` dropped,
   show_doc rendered, backticked names linked), as `nbdev_proc_nbs` would, without Quarto;
3. translate the Quarto-flavoured result to MyST notebooks (title, remove-input tags,
   show_doc blocks as markdown with targets, nbdev's absolute links as cross-references);
4. Sphinx + myst-nb (no execution) + sphinx-book-theme with docs/conf.py, autodoc/autosummary
   API reference, MathJax vendored from npm (`mathjax@3`) so the site makes no outside request.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import warnings
from pathlib import Path

# jsonschema's optional `rfc3987_syntax` format checker compiles a grammar on import (about 4 s);
# notebook validation does not use it (docs/conf.py does the same for Sphinx).
sys.modules.setdefault("rfc3987_syntax", None)

ROOT = Path(__file__).resolve().parents[1]
DOCS_CONF = ROOT / "docs"
CACHE = ROOT / "_build"  # git-ignored
MATHJAX_VERSION = "3.2.2"
MATHJAX_PARTS = ("tex-mml-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions", "a11y", "ui", "adaptors")
CELL_TIMEOUT = 600  # seconds one cell may run before the build fails

# Quarto cell options we translate to myst-nb cell tags
_TAG_FOR_OPTION = {("echo", "false"): "remove-input", ("output", "false"): "remove-output",
                   ("include", "false"): "remove-cell"}
_re_ansi = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_re_directive = re.compile(r"^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$")
_re_nbdev_link = re.compile(r"\[([^\]]*)\]\(https?://127\.0\.0\.1(?::\d+)?/([\w/.-]*?)\.html#([^)\s]+)\)")
_re_nb_link = re.compile(r"\]\((?:\./)?(\d+[a-zA-Z0-9]*_)?([\w-]+)\.ipynb(#[^)\s]*)?\)")
_re_file_link = re.compile(r"\]\((?![a-z][\w+.-]*:|#|/)([^)\s#]+)(#[^)\s]*)?\)")
_re_source_link = re.compile(r"\[source\]\((\S+?)\)(\{[^}]*\})?\s*")
_re_showdoc_heading = re.compile(r"^(#{2,4})\s+(\S+)\s*$", re.MULTILINE)


# ---------------------------------------------------------------- settings and names

def settings() -> configparser.SectionProxy:
    """The [DEFAULT] section of the project's settings.ini."""
    cfg = configparser.ConfigParser(interpolation=None)
    if not cfg.read(ROOT / "settings.ini"): raise SystemExit(f"settings.ini not found in {ROOT}")
    return cfg["DEFAULT"]


def page_name(nb_path: Path) -> str:
    """nbdev's page name of a notebook: `00a_runs.ipynb` -> `runs` (as in its doc links)."""
    return re.sub(r"^\d+[a-zA-Z0-9]*_", "", nb_path.stem.lower())


def find_notebooks(nbs: Path) -> list[Path]:
    """The notebooks to document, in order (nbdev's rule: skip names starting with `_` or `.`)."""
    return sorted(p for p in nbs.glob("*.ipynb") if not p.name.startswith(("_", ".")))


def log(msg: str):
    """Print a progress line."""
    print(f"[docsite] {msg}", flush=True)


# ---------------------------------------------------------------- 1. execute

def kernel_name() -> str:
    """`thinkalike-ml` if that kernel is registered, else `python3` (the venv's own python)."""
    from jupyter_client.kernelspec import KernelSpecManager
    return "thinkalike-ml" if "thinkalike-ml" in KernelSpecManager().find_kernel_specs() else "python3"


def make_sandbox(nbs: Path, work: Path) -> Path:
    """A scratch copy of the project for executing the notebooks: settings.ini, nbs/ copied, data/ linked.

    Notebooks find the project root from their working directory, so their runs, reports and
    MLflow store land in the scratch folder, never in the checkout.
    """
    if not nbs.is_dir(): raise SystemExit(f"notebook folder {nbs} does not exist: pass --nbs <folder>")
    if work.exists(): shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copy2(ROOT / "settings.ini", work / "settings.ini")
    if (ROOT / "data").is_dir(): (work / "data").symlink_to(ROOT / "data", target_is_directory=True)
    shutil.copytree(nbs, work / "nbs", ignore=shutil.ignore_patterns(".ipynb_checkpoints", "_proc", "__pycache__"))
    # the stage notebooks' cached upstream runs live in the sandbox too: they track to the sandbox's
    # MLflow store, and a run cached by an earlier build or by the tests would name MLflow runs that
    # this fresh store does not have (the registry stage registers the models logged there)
    os.environ.update({"THINKALIKE_REPORTS_DIR": str(work / "reports"), "OMP_NUM_THREADS": "1",
                       "THINKALIKE_CACHE_DIR": str(work / "cache"),
                       "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
                       "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
    # create the store's tables now: notebooks executed in parallel would otherwise both migrate the new database
    import mlflow
    mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).search_experiments()
    return work / "nbs"


def _skip_unevaluated(nb):
    """Tag `#| eval: false` cells so that nbclient skips them, as Quarto would."""
    for cell in nb.cells:
        if cell.cell_type == "code" and cell_options(cell.source).get("eval") == "false":
            cell.metadata.setdefault("tags", []).append("skip-execution")


def execute_notebook(path: Path, dest: Path, kernel: str) -> float:
    """Execute the notebook at `path` (cwd = its folder) into `dest`; return seconds taken.

    The copies in the sandbox stay as they were: a notebook may read its siblings while they run.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError
    start = time.monotonic()
    nb = nbformat.read(path, as_version=4)
    _skip_unevaluated(nb)
    client = NotebookClient(nb, kernel_name=kernel, timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(path.parent)}},
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])  # not its TCP-transport warning
    try: client.execute()
    except (CellExecutionError, CellTimeoutError) as e:
        raise RuntimeError(f"notebook {path.name} failed while executing for the docs:\n{_re_ansi.sub('', str(e))}\n"
                           f"Fix the notebook (run it in JupyterLab), then rebuild.") from None
    nbformat.write(nb, dest)
    return time.monotonic() - start


def execution_key(path: Path, kernel: str) -> str:
    """A hash of what a notebook's outputs depend on: its cells, the library, settings.ini, data/ and the kernel."""
    import hashlib
    h = hashlib.sha256(f"{kernel}\n".encode())
    nb = json.loads(path.read_text(encoding="utf-8"))
    h.update(json.dumps([[c["cell_type"], text(c.get("source")), c.get("metadata", {}).get("tags", [])]
                         for c in nb.get("cells", [])]).encode())
    for f in sorted((ROOT / settings()["lib_path"]).rglob("*.py")) + [ROOT / "settings.ini"]:
        h.update(f.name.encode() + f.read_bytes())
    for f in sorted((ROOT / "data").rglob("*")) if (ROOT / "data").is_dir() else []:
        if f.is_file(): h.update(f"{f.relative_to(ROOT)} {f.stat().st_size} {f.stat().st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _execute_cached(path: Path, dest: Path, kernel: str, cache: Path | None) -> str:
    """Execute one notebook into `dest`, or copy its outputs from `cache` when nothing it depends on changed."""
    key = execution_key(path, kernel) if cache else None
    hit = cache / f"{path.stem}-{key}.ipynb" if cache else None
    if hit and hit.exists():
        shutil.copy2(hit, dest)
        hit.touch()
        return "cached"
    seconds = execute_notebook(path, dest, kernel)
    if hit:  # atomically: another build may be reading the cache
        cache.mkdir(parents=True, exist_ok=True)
        tmp = hit.with_name(f".{hit.name}.{os.getpid()}")
        shutil.copy2(dest, tmp)
        os.replace(tmp, hit)
    return f"{seconds:.1f} s"


def execute_all(paths: list[Path], dest: Path, jobs: int, cache: Path | None) -> list[Path]:
    """Execute the notebooks into `dest`, `jobs` at a time; fail naming the first notebook that raised."""
    kernel = kernel_name()
    dest.mkdir()
    log(f"executing {len(paths)} notebook(s) with kernel {kernel!r}, {jobs} at a time"
        + (f" (unchanged ones from {cache})" if cache else ""))
    if jobs <= 1:
        for p in paths: log(f"  {p.name}: {_execute_cached(p, dest / p.name, kernel, cache)}")
    else:
        with concurrent.futures.ProcessPoolExecutor(jobs) as pool:
            futures = {pool.submit(_execute_cached, p, dest / p.name, kernel, cache): p for p in paths}
            for fut in concurrent.futures.as_completed(futures):
                try: log(f"  {futures[fut].name}: {fut.result()}")
                except BaseException:
                    for f in futures: f.cancel()
                    raise
    if cache: prune_cache(cache, paths, kernel)
    return [dest / p.name for p in paths]


def prune_cache(cache: Path, paths: list[Path], kernel: str) -> None:
    """Delete cached executions of these notebooks that no longer match them."""
    keep = {f"{p.stem}-{execution_key(p, kernel)}.ipynb" for p in paths}
    stems = {p.stem for p in paths}
    for f in cache.glob("*.ipynb"):
        if f.name not in keep and f.stem.rsplit("-", 1)[0] in stems: f.unlink()


# ---------------------------------------------------------------- 2. nbdev processors

def split_title_cell(nb) -> None:
    """Move prose that shares the title cell into a cell of its own (nbdev's front matter would swallow it)."""
    from execnb.nbio import mk_cell
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown": continue
        lines = cell.source.splitlines()
        if not any(re.match(r"^#\s+\S", l) for l in lines): return
        head = [l for l in lines if re.match(r"^(#\s+\S|>\s+\S|-\s+\S.*:)", l)]
        rest = [l for l in lines if l not in head]
        if "\n".join(rest).strip():
            cell.set_source("\n".join(head))
            nb.cells.insert(i + 1, mk_cell("\n".join(rest).strip("\n"), "markdown"))
        return


def _imports_only(source: str) -> str | None:
    """The top-level import statements of a cell that mixes imports with other code, else None."""
    import ast
    try: tree = ast.parse("\n".join(l for l in source.splitlines() if not l.lstrip().startswith(("%", "!"))))
    except SyntaxError: return None
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    if not imports or len(imports) == len(tree.body): return None
    return "\n".join(ast.unparse(n) for n in imports)


def doc_filter():
    """nbdev's FilterDefaults, except that a cell mixing imports with other code has only its imports re-run.

    nbdev re-runs such cells in a fresh shell to render show_doc; a cell like `import matplotlib...;
    plot(data)` then fails (nbdev's FAQ says split the cell). Its outputs come from the real execution.
    """
    from nbdev.processors import FilterDefaults, _do_eval, exec_show_docs

    class exec_show_docs_imports(exec_show_docs):
        "Execute the cells show_doc needs; of a mixed cell only its imports"
        def __call__(self, cell):
            if getattr(self.nb, "has_docs_", None) and hasattr(self, "k") and _do_eval(cell):
                runs_whole = cell.directives_.keys() & {"export", "exports", "exporti", "exec_doc"} or "show_doc" in cell.source
                imports = None if runs_whole else _imports_only(cell.source)
                if imports is not None:
                    self.k.run_cell(imports)
                    if self.k.exc: raise RuntimeError(f"cell {cell.idx_}: {imports}") from self.k.exc
                    return
            return super().__call__(cell)

    class DocFilter(FilterDefaults):
        def base_procs(self):
            return [exec_show_docs_imports if p is exec_show_docs else p for p in super().base_procs()]
    return DocFilter()


def nbdev_process(path: Path, dest: Path) -> Path:
    """Run nbdev's doc processors (FilterDefaults, as nbdev_proc_nbs does) on one executed notebook."""
    from execnb.nbio import read_nb, write_nb
    nb = read_nb(path)
    split_title_cell(nb)
    os.environ["IN_TEST"] = "1"  # as nbdev.serve_drv does while processing
    try:
        with warnings.catch_warnings():  # nbdev's style advice, not a docs problem
            warnings.filterwarnings("ignore", message="Found cells containing imports and other code")
            doc_filter()(nb)
    except Exception as e:
        raise RuntimeError(f"nbdev could not process {path.name} for the docs: {e}") from e
    finally: os.environ.pop("IN_TEST", None)
    write_nb(nb, dest)
    return dest


# ---------------------------------------------------------------- 3. Quarto markdown -> MyST

def cell_options(source: str) -> dict[str, str]:
    """The `#| key: value` options at the top of a code cell, lower-cased values."""
    opts = {}
    for line in source.splitlines():
        m = _re_directive.match(line)
        if not m:
            if line.strip(): break
            continue
        opts[m.group(1)] = m.group(2).lower()
    return opts


def strip_directives(source: str) -> str:
    """`source` without its `#|` lines."""
    return "\n".join(l for l in source.splitlines() if not _re_directive.match(l)).strip("\n")


def text(value) -> str:
    """A notebook field (string or list of lines) as one string."""
    return "".join(value) if isinstance(value, list) else (value or "")


def showdoc_targets(md: str, page: str, taken: list[str], known: set[str]) -> tuple[str, list[str]]:
    """Clean a show_doc block (drop leading `---`, link [source] to the highlighted code) and add a target to its heading."""
    md = re.sub(r"^\s*---\s*\n", "", md)
    labels = []
    source = ""
    m = _re_source_link.search(md)
    if m:
        md = md[:m.start()] + md[m.end():]
        mod = re.search(r"/blob/[^/]+/([\w/]+)\.py(?:#|$)", m.group(1))  # nbdev: {git_url}/blob/{branch}/{path}
        source = mod.group(1).replace("/", ".") if mod else ""

    def add_target(h):
        name = h.group(2).strip("`\\")
        label = f"{page}-{name.lower()}"  # not `page.name`: MyST would also match the API entry
        if label in taken or label in labels: return h.group(0)  # shown twice: one target
        labels.append(label)
        link = (f'\n\n<a class="showdoc-source" href="_modules/{source.replace(".", "/")}.html#{name}">[source]</a>\n'
                if f"{source}.{name}" in known else "")  # viewcode highlights what the API reference documents
        return f"({label})=\n{h.group(1)} {name}{link}"
    md = _re_showdoc_heading.sub(add_target, md, count=1)
    return md.strip(), labels


def frontmatter_cell(src: str) -> str | None:
    """The markdown title and summary for a nbdev front-matter raw cell, or None if it is not one."""
    import yaml
    m = re.match(r"^\s*---\s*\n(.*?)\n---\s*$", src, flags=re.DOTALL)
    if not m: return None
    fm = yaml.safe_load(m.group(1)) or {}
    parts = [f"# {fm['title']}"] if fm.get("title") else []
    if fm.get("description"): parts.append(f"> {fm['description']}")
    return "\n\n".join(parts)


def md_cell(source: str) -> dict:
    """A new markdown cell."""
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def translate_code_cell(cell: dict, page: str, labels: list[str], known: set[str]) -> dict | None:
    """A processed code cell for myst-nb: options to tags, `output: asis` to markdown, directives removed."""
    src = text(cell.get("source"))
    opts = cell_options(src)
    if opts.get("output") == "asis":
        md = "\n\n".join(text(o.get("data", {}).get("text/markdown", o.get("text", "")))
                         for o in cell.get("outputs", []))
        if "show_doc" in src:
            md, new = showdoc_targets(md, page, labels, known)
            labels.extend(new)
        return md_cell(md) if md.strip() else None
    tags = [t for t in cell.get("metadata", {}).get("tags", []) if t not in ("skip-execution", "parameters", "injected-parameters")]
    tags += [tag for (k, v), tag in _TAG_FOR_OPTION.items() if opts.get(k) == v]
    src = strip_directives(src)
    if not src and not cell.get("outputs"): return None
    return {"cell_type": "code", "metadata": {"tags": sorted(set(tags))} if tags else {},
            "source": src, "outputs": cell.get("outputs", []), "execution_count": cell.get("execution_count")}


def translate_notebook(nb: dict, page: str, known: set[str]) -> tuple[dict, list[str]]:
    """The nbdev-processed notebook as a myst-nb notebook, and the targets it defines."""
    cells, labels = [], []
    for cell in nb["cells"]:
        src = text(cell.get("source"))
        if cell["cell_type"] == "raw":
            title = frontmatter_cell(src)
            if title: cells.append(md_cell(title))
        elif cell["cell_type"] == "markdown":
            if "THIS FILE WAS AUTOGENERATED" in src and src.lstrip().startswith("<!--"): continue
            cells.append(md_cell(src))
        elif cell["cell_type"] == "code":
            new = translate_code_cell(cell, page, labels, known)
            if new: cells.append(new)
    for i, c in enumerate(cells): c["id"] = f"cell-{i}"
    meta = {k: v for k, v in nb.get("metadata", {}).items() if k in ("kernelspec", "language_info")}
    return {"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}, labels


def rewrite_links(md: str, labels: set[str], pages: set[str], urls: dict[str, str], known: set[str]) -> str:
    """nbdev's absolute doc links -> MyST cross-references; `NN_name.ipynb` links -> the page."""
    def nbdev_link(m):
        txt, page, anchor = m.groups()
        label = f"{page}-{anchor}".lower()
        if label in labels: return f"[{txt}]({label})"  # the show_doc block on a stage page
        qual = urls.get(f"{page}.html#{anchor}")
        return f"[{txt}]({qual})" if qual in known else txt  # the API reference, else plain code

    def nb_link(m):
        name = m.group(2).lower()
        if name not in pages: return m.group(0)
        return f"]({name}.ipynb{m.group(3) or ''})"
    return _re_nb_link.sub(nb_link, _re_nbdev_link.sub(nbdev_link, md))


def symbol_urls(lib: str) -> dict[str, str]:
    """nbdev's doc URL of each exported symbol (`config.html#param`) -> its qualified name."""
    import importlib
    idx = importlib.import_module(f"{lib}._modidx").d["syms"]
    return {url: qual for syms in idx.values() for qual, (url, _) in syms.items()}


def repo_file_links(md: str, nbs: Path, files: dict[str, Path]) -> str:
    """Relative links to files of the checkout (from nbs/, or from the root as in the README) -> `_repo/<path>`."""
    def fix(m):
        target = m.group(1)
        if target.endswith(".ipynb"): return m.group(0)
        for base in (nbs, ROOT):
            f = (base / target).resolve()
            if f.is_file() and f.is_relative_to(ROOT):
                rel = f.relative_to(ROOT).as_posix()
                files[rel] = f
                return f"](path:_repo/{rel})"  # a download; MyST would take a .md for a page
        return m.group(0)
    return _re_file_link.sub(fix, md)


def link_cells(nb: dict, labels: set[str], pages: set[str], lib: str, known: set[str], nbs: Path,
               files: dict[str, Path]) -> dict:
    """Rewrite the links of every markdown cell (and markdown output) of a translated notebook."""
    urls = symbol_urls(lib)
    fix = lambda md: rewrite_links(repo_file_links(md, nbs, files), labels, pages, urls, known)
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown": cell["source"] = fix(cell["source"])
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if "text/markdown" in data: data["text/markdown"] = fix(text(data["text/markdown"]))
    return nb


def documented_symbols(lib: str) -> set[str]:
    """Fully qualified names autodoc documents (docs/conf.py: members, undoc-members): `__all__` and public methods."""
    import importlib, inspect
    names = set()
    for mod in api_modules(lib):
        m = importlib.import_module(mod)
        for n in getattr(m, "__all__", []):
            obj = getattr(m, n, None)
            names.add(f"{mod}.{n}")
            if inspect.isclass(obj):
                names.update(f"{mod}.{n}.{k}" for k, v in vars(obj).items() if not k.startswith("_") and callable(v))
    return names


def api_modules(lib: str) -> list[str]:
    """The library's public modules (nbdev's `_modidx` lists what the notebooks export)."""
    import importlib
    idx = importlib.import_module(f"{lib}._modidx").d["syms"]
    return sorted(m for m in idx if not m.rsplit(".", 1)[-1].startswith("_"))


# ---------------------------------------------------------------- 4. Sphinx sources

def index_source(pages: list[str], home: dict | None, cfg) -> dict:
    """The home page: index.ipynb's translation (or a title page from settings.ini) plus the navigation."""
    stages = "\n".join(p for p in pages if p != "index")
    toc = (f"```{{toctree}}\n:hidden:\n:maxdepth: 1\n:caption: Stages\n\n{stages}\n```\n\n"
           "```{toctree}\n:hidden:\n:maxdepth: 1\n:caption: Reference\n\napi/index\n```")
    if home is None:
        home = {"cells": [md_cell(f"# {cfg['title']}\n\n> {cfg['description']}")], "metadata": {},
                "nbformat": 4, "nbformat_minor": 5}
    home["cells"].append(md_cell(toc))
    for i, c in enumerate(home["cells"]): c["id"] = f"cell-{i}"
    return home


def api_index_source(modules: list[str]) -> str:
    """The API reference index: an autosummary of every module, one generated page each."""
    items = "\n".join(f"   {m}" for m in modules)
    return ("API reference\n=============\n\n"
            "What ``{lib}`` exports, module by module (generated from the docstrings).\n\n"
            ".. autosummary::\n   :toctree: generated\n\n" + items + "\n").replace(
        "{lib}", modules[0].split(".")[0] if modules else "the library")


def write_sources(proc: dict[str, Path], src: Path, lib: str, cfg, nbs: Path) -> None:
    """Translate the processed notebooks into the Sphinx source folder `src`."""
    if src.exists(): shutil.rmtree(src)
    (src / "api").mkdir(parents=True)
    translated, labels, known = {}, set(), documented_symbols(lib)
    for page, path in proc.items():
        translated[page], new = translate_notebook(json.loads(path.read_text()), page, known)
        labels.update(new)
    pages, files = set(proc), {}
    for page, nb in translated.items(): link_cells(nb, labels, pages, lib, known, nbs, files)
    for rel, f in files.items():  # linked files of the checkout become downloads of the site
        (src / "_repo" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, src / "_repo" / rel)
    home = index_source(list(proc), translated.pop("index", None), cfg)
    (src / "index.ipynb").write_text(json.dumps(home, indent=1))
    for page, nb in translated.items(): (src / f"{page}.ipynb").write_text(json.dumps(nb, indent=1))
    (src / "api" / "index.rst").write_text(api_index_source(api_modules(lib)))


# ---------------------------------------------------------------- MathJax, vendored

def mathjax_dir() -> Path:
    """A local copy of MathJax 3 (fetched once with `npm pack` into _build/), laid out as _static/mathjax/."""
    static = CACHE / "mathjax-static"
    dest = static / "mathjax"
    if (dest / "tex-mml-chtml.js").exists(): return static
    pack = CACHE / "npm"
    pack.mkdir(parents=True, exist_ok=True)
    tgz = pack / f"mathjax-{MATHJAX_VERSION}.tgz"
    if not tgz.exists():
        log(f"fetching mathjax@{MATHJAX_VERSION} with npm pack (once)")
        if not shutil.which("npm"): raise SystemExit("npm is needed once to fetch MathJax: apt-get install -y npm")
        r = subprocess.run(["npm", "pack", f"mathjax@{MATHJAX_VERSION}", "--silent"], cwd=pack,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode or not tgz.exists():
            raise SystemExit(f"`npm pack mathjax@{MATHJAX_VERSION}` failed (the npm registry is needed once); or put "
                             f"mathjax-{MATHJAX_VERSION}.tgz into {pack}:\n{r.stderr[-2000:]}")
    tmp = static.with_name("mathjax-unpack")
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(tgz) as tar: tar.extractall(tmp, filter="data")
    es5 = tmp / "package" / "es5"
    for part in MATHJAX_PARTS:
        s, d = es5 / part, dest / part
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(s, d) if s.is_dir() else shutil.copy2(s, d)
    shutil.copy2(tmp / "package" / "LICENSE", dest / "LICENSE")
    shutil.rmtree(tmp)
    return static


# ---------------------------------------------------------------- 5. Sphinx

def run_sphinx(src: Path, out: Path, doctrees: Path, strict: bool) -> None:
    """Run sphinx-build (html, docs/conf.py) from `src` into `out`; fail on warnings if `strict`."""
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(DOCS_CONF), "-d", str(doctrees),
           "-j", "1", "-q", str(src), str(out)]
    if strict: cmd[3:3] = ["-W", "--keep-going"]
    env = {**os.environ, "DOCSITE_MATHJAX_STATIC": str(mathjax_dir())}
    r = subprocess.run(cmd, env=env, cwd=ROOT)
    if r.returncode: raise SystemExit(f"sphinx-build failed (exit {r.returncode}); see the warnings above"
                                      + (" (or build with --no-strict to see the site anyway)" if strict else ""))


def use_working_tree_library():
    """Make this checkout's library importable here, in the kernels and in Sphinx (whatever pip installed)."""
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))


def build(out: Path, nbs: Path, work: Path, jobs: int = 2, strict: bool = True, cache: Path | None = None) -> Path:
    """Build the site from the notebooks in `nbs` into `out`, using the scratch folder `work`.

    With `cache`, a notebook whose cells, library, settings and data are unchanged is not re-executed.
    """
    t0 = time.monotonic()
    os.chdir(ROOT)  # nbdev reads settings.ini from the working directory
    use_working_tree_library()
    cfg = settings()
    paths = find_notebooks(make_sandbox(nbs, work))
    if not paths: raise SystemExit(f"no notebooks in {nbs}")
    executed = execute_all(paths, work / "executed", jobs, cache)
    t1 = time.monotonic()
    procdir = work / "proc"
    procdir.mkdir()
    os.chdir(work / "nbs")  # nbdev re-runs import cells for show_doc here, reading the sandbox's settings.ini
    proc = {page_name(p): nbdev_process(p, procdir / p.name) for p in executed}
    os.chdir(ROOT)
    write_sources(proc, work / "src", cfg["lib_name"], cfg, nbs)
    t2 = time.monotonic()
    run_sphinx(work / "src", work / "html", work / "doctrees", strict)
    (work / "html" / ".nojekyll").touch()
    if out.exists(): shutil.rmtree(out)  # replaced only once the new site is complete
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(work / "html", out)
    t3 = time.monotonic()
    log(f"site in {out}: execute {t1 - t0:.1f} s, nbdev+MyST {t2 - t1:.1f} s, sphinx {t3 - t2:.1f} s, "
        f"total {t3 - t0:.1f} s")
    return out


def serve(out: Path, port: int) -> None:
    """Serve the built site on http://127.0.0.1:`port`/ until interrupted."""
    if not (out / "index.html").exists(): raise SystemExit(f"no site in {out}: run `python tools/docsite.py build` first")
    log(f"serving {out} on http://127.0.0.1:{port}/ (Ctrl-C to stop)")
    try: subprocess.run([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(out)])
    except KeyboardInterrupt: pass


# ---------------------------------------------------------------- command line

def main(argv=None):
    """Command line: `build` or `serve` the site, or write the `readme`."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="render the docs site from the notebooks (offline)")
    b.add_argument("--out", type=Path, default=ROOT / "_docs", help="site folder (replaced)")
    b.add_argument("--nbs", type=Path, default=ROOT / "nbs", help="notebook folder")
    b.add_argument("--work", type=Path, default=CACHE / "docsite", help="scratch folder (replaced)")
    b.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="notebooks executed at once")
    b.add_argument("--no-strict", dest="strict", action="store_false", help="do not fail on Sphinx warnings")
    b.add_argument("--cache", type=Path, default=CACHE / "docsite-executed",
                   help="executed notebooks kept between builds, reused while nothing they depend on changes")
    b.add_argument("--no-cache", dest="cache", action="store_const", const=None, help="execute every notebook")
    v = sub.add_parser("serve", help="serve the built site on 127.0.0.1")
    v.add_argument("--out", type=Path, default=ROOT / "_docs", help="site folder")
    v.add_argument("--port", type=int, default=8000)
    r = sub.add_parser("readme", help="write README.md from nbs/index.ipynb")
    r.add_argument("--nbs", type=Path, default=ROOT / "nbs")
    r.add_argument("--out", type=Path, default=ROOT / "README.md")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            build(args.out.resolve(), args.nbs.resolve(), args.work.resolve(), args.jobs, args.strict,
                  args.cache.resolve() if args.cache else None)
        elif args.cmd == "serve":
            serve(args.out.resolve(), args.port)
        else:
            sys.path.insert(0, str(Path(__file__).parent))
            import readme
            readme.write_readme(args.nbs / "index.ipynb", args.out)
    except RuntimeError as e:
        raise SystemExit(f"docsite: {e}")


if __name__ == "__main__":
    main()
