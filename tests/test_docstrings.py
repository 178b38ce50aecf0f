"""Docstrings the documentation site can read: the strict docs build (slow tier) fails on any docutils warning in a
docstring, such as `mean |SHAP|` read as a substitution or a code span glued to a letter; this finds it in the default tier,
in a second, for the whole docstring and for its first line (the summary autosummary shows)."""
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
    "What docutils reports (warnings and worse: the strict build fails on warnings) when it reads `text` as reStructuredText, as Sphinx does."
    stream = io.StringIO()
    docutils.core.publish_doctree(text, settings_overrides={"warning_stream": stream, "report_level": 2, "halt_level": 5})
    return stream.getvalue()


def test_the_check_finds_a_substitution():
    assert "Undefined substitution" in docutils_errors("Each feature's mean |SHAP|, most important first.")
    assert docutils_errors("Each feature's mean absolute SHAP value; `|x|` in a code span is fine.") == ""
    assert "without end-string" in docutils_errors("Tables given as `PartitionedTable`s or frames.")
    assert docutils_errors("Tables given as `PartitionedTable` objects or frames.") == ""


def test_no_docstring_makes_a_docutils_warning():
    found = list(docstrings())
    assert len(found) > 100
    bad = [(where, part, e.strip().splitlines()[0]) for where, d in found for part, text in (("docstring", d), ("first line", d.splitlines()[0]))
           if (e := docutils_errors(text))]
    assert bad == [], f"docstrings the strict docs build would fail on (a |substitution|, a code span glued to a letter...): {bad}"
