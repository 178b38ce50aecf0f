"""Docstrings the documentation site can read: the strict docs build (slow tier) fails on a docstring that docutils
reads as a `|substitution|`, such as `mean |SHAP|`; this finds it in the default tier, in a second."""
import ast
import io
from pathlib import Path

import docutils.core

ROOT = Path(__file__).resolve().parents[1]


def docstrings():
    "(where, docstring) of every module, class and function of the library."
    files = sorted((ROOT / "thinkalike_ml").glob("*.py"))
    assert files, f"no library modules under {ROOT / 'thinkalike_ml'}"
    for f in files:
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and (d := ast.get_docstring(n)):
                yield f"{f.name}:{getattr(n, 'name', '<module>')}", d


def docutils_errors(text: str) -> str:
    "What docutils reports (errors and worse) when it reads `text` as reStructuredText, as Sphinx does."
    stream = io.StringIO()
    docutils.core.publish_doctree(text, settings_overrides={"warning_stream": stream, "report_level": 3, "halt_level": 5})
    return stream.getvalue()


def test_the_check_finds_a_substitution():
    assert "Undefined substitution" in docutils_errors("Each feature's mean |SHAP|, most important first.")
    assert docutils_errors("Each feature's mean absolute SHAP value; `|x|` in a code span is fine.") == ""


def test_no_docstring_holds_an_undefined_substitution():
    found = list(docstrings())
    assert len(found) > 100
    bad = [where for where, d in found if "Undefined substitution" in docutils_errors(d)]
    assert bad == [], f"docstrings the docs build reads as |substitutions| (write 'absolute value' or use a code span): {bad}"
