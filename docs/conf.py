"""Sphinx configuration of the docs site; built by `python tools/docsite.py build` (see that file)."""
import configparser
import os
import sys
from pathlib import Path

# jsonschema's optional `rfc3987_syntax` format checker compiles a grammar on import (about 4 s);
# notebook validation does not use it, so keep it out of the build.
sys.modules.setdefault("rfc3987_syntax", None)

ROOT = Path(__file__).resolve().parents[1]
_cfg = configparser.ConfigParser(interpolation=None)
_cfg.read(ROOT / "settings.ini")
_s = _cfg["DEFAULT"]

project = _s["title"]
author = _s["author"]
copyright = _s["copyright"]
version = release = _s["version"]

extensions = [
    "myst_nb",  # notebooks and MyST markdown
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",  # highlighted source pages, the target of show_doc's [source] links
    "sphinx.ext.mathjax",
]
source_suffix = {".rst": "restructuredtext", ".ipynb": "myst-nb"}  # other files are downloads
exclude_patterns = ["_build", "_repo", "**.ipynb_checkpoints"]  # _repo: linked files of the checkout
default_role = "py:obj"  # `name` in docstrings links to the API entry when there is one
suppress_warnings = ["myst.header"]  # a show_doc heading may sit under the page title directly

# Notebooks were executed by tools/docsite.py before Sphinx sees them
nb_execution_mode = "off"
nb_render_markdown_format = "myst"
nb_output_stderr = "show"
nb_merge_streams = True
nb_ipywidgets_js = {}  # widgets would load require.js and the widget manager from a CDN
nb_mime_priority_overrides = [("*", "application/vnd.jupyter.widget-view+json", None)]  # their text fallback instead
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

autosummary_generate = True
autosummary_ignore_module_all = False  # a module page lists what its __all__ exports
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

html_theme = "sphinx_book_theme"
html_title = project
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_last_updated_fmt = None
html_theme_options = {
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "navigation_with_keys": False,
}
html_show_sourcelink = False
html_context = {"default_mode": "auto"}  # unset, the theme logs a console error on first visit

# Offline: MathJax is vendored (npm `mathjax@3`, fetched by tools/docsite.py into _build/), never the CDN
_mathjax = os.environ.get("DOCSITE_MATHJAX_STATIC") or str(ROOT / "_build" / "mathjax-static")
if Path(_mathjax, "mathjax", "tex-mml-chtml.js").exists():
    html_static_path.append(_mathjax)
mathjax_path = "mathjax/tex-mml-chtml.js"


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Document only what the library defines: not, e.g., scikit-learn's generated `set_fit_request`."""
    module = getattr(obj, "__module__", None)
    if what == "class" and callable(obj) and module and not module.startswith(_s["lib_name"]):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)
