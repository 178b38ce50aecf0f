#!/usr/bin/env python
"""Write README.md from nbs/index.ipynb (nbdev_readme needs Quarto, so the project does it itself).

    python tools/readme.py [--nb nbs/index.ipynb] [--out README.md] [--check]

Markdown cells are copied as they are; code cells become ```python blocks (their `#|` lines
removed) followed by their text outputs, if the notebook has any; `#| hide`, `#| export*`,
`#| include: false` and `#| echo: false` cells and a front-matter raw cell are dropped (a title
and summary in front matter become `# title` and `> summary` when no markdown H1 exists).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, then `make readme`. -->"
_re_directive = re.compile(r"^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$")
_DROP = {"hide", "export", "exporti", "exports", "default_exp"}


def text(value) -> str:
    """A notebook field (string or list of lines) as one string."""
    return "".join(value) if isinstance(value, list) else (value or "")


def directives(source: str) -> dict[str, str]:
    """The `#| name: value` lines of a code cell, values lower-cased."""
    found = {}
    for line in source.splitlines():
        m = _re_directive.match(line)
        if m: found[m.group(1)] = m.group(2).lower()
    return found


def dropped(source: str) -> bool:
    """Whether a code cell stays out of the README."""
    d = directives(source)
    return bool(_DROP & d.keys()) or d.get("include") == "false" or d.get("echo") == "false"


def frontmatter(source: str) -> dict:
    """The YAML front matter of a raw cell, or {} when it has none."""
    import yaml
    m = re.match(r"^\s*---\s*\n(.*?)\n---\s*$", source, flags=re.DOTALL)
    return (yaml.safe_load(m.group(1)) or {}) if m else {}


def text_outputs(cell: dict) -> str:
    """The text outputs of a code cell as a fenced block ('' when it has none)."""
    parts = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream" and o.get("name") == "stdout": parts.append(text(o.get("text")))
        elif "text/plain" in o.get("data", {}) and "image/png" not in o.get("data", {}):
            parts.append(text(o["data"]["text/plain"]))
    out = "\n".join(p.rstrip("\n") for p in parts if p.strip())
    return f"```\n{out}\n```" if out else ""


def code_block(cell: dict) -> str:
    """A code cell as a ```python block, its `#|` lines removed, then its text outputs."""
    src = "\n".join(l for l in text(cell.get("source")).splitlines() if not _re_directive.match(l)).strip("\n")
    blocks = [f"```python\n{src}\n```"] if src.strip() else []
    outs = text_outputs(cell)
    return "\n\n".join(blocks + ([outs] if outs else []))


def notebook_to_markdown(nb: dict) -> str:
    """The README text of a notebook."""
    cells, title = nb.get("cells", []), []
    has_h1 = any(c["cell_type"] == "markdown" and re.match(r"^\s*#\s", text(c["source"])) for c in cells)
    parts = []
    for cell in cells:
        src = text(cell.get("source"))
        if cell["cell_type"] == "raw":
            fm = frontmatter(src)
            if fm and not has_h1 and not title:
                title = [f"# {fm['title']}"] if fm.get("title") else []
                title += [f"> {fm['description']}"] if fm.get("description") else []
            continue
        if cell["cell_type"] == "markdown":
            if src.strip(): parts.append(src.strip("\n"))
        elif cell["cell_type"] == "code" and not dropped(src):
            block = code_block(cell)
            if block: parts.append(block)
    return "\n\n".join([HEADER] + title + parts) + "\n"


STAGE_TABLE = re.compile(r"(<!-- stages -->\n)(?:.*?\n)?(<!-- /stages -->)", flags=re.DOTALL)


def stage_table() -> str:
    """The stage table, written from the declarations in thinkalike_ml.stages (never by hand)."""
    sys.path.insert(0, str(ROOT))
    from thinkalike_ml.stages import stage_table as table
    return table()


def sync_stage_table(nb: dict) -> bool:
    """Rewrite the table between `<!-- stages -->` and `<!-- /stages -->` in the notebook's markdown; True if it changed."""
    changed = False
    for cell in nb.get("cells", []):
        src = text(cell.get("source"))
        if cell["cell_type"] == "markdown" and STAGE_TABLE.search(src):
            new = STAGE_TABLE.sub(lambda m: m.group(1) + stage_table() + "\n" + m.group(2), src)
            if new != src: cell["source"], changed = new.splitlines(keepends=True), True
    return changed


def write_readme(nb_path: Path, out: Path, check: bool = False) -> bool:
    """Write `out` from the notebook `nb_path` (after updating its stage table); with `check`, only report whether both are up to date."""
    nb_path, out = Path(nb_path), Path(out)
    if not nb_path.exists():
        raise SystemExit(f"{nb_path} does not exist: the README is generated from it. Write nbs/index.ipynb "
                         f"(title, summary, install and usage) first, then run `make readme`.")
    try: nb = json.loads(nb_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e: raise SystemExit(f"{nb_path} is not a valid notebook (JSON error: {e})")
    table_changed = sync_stage_table(nb)
    md = notebook_to_markdown(nb)
    current = out.read_text(encoding="utf-8") if out.exists() else None
    if check:
        if table_changed: print(f"the stage table in {nb_path} differs from thinkalike_ml.stages: run `make readme`", file=sys.stderr)
        if current != md: print(f"{out} is out of date with {nb_path}: run `make readme`", file=sys.stderr)
        return current == md and not table_changed
    if table_changed:
        nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"updated the stage table in {nb_path}")
    if current != md: out.write_text(md, encoding="utf-8")
    print(f"wrote {out} from {nb_path}" if current != md else f"{out} is up to date")
    return True


def main(argv=None):
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nb", type=Path, default=ROOT / "nbs" / "index.ipynb", help="source notebook")
    ap.add_argument("--out", type=Path, default=ROOT / "README.md", help="README to write")
    ap.add_argument("--check", action="store_true", help="exit 1 if the README is out of date, write nothing")
    args = ap.parse_args(argv)
    sys.exit(0 if write_readme(args.nb, args.out, args.check) else 1)


if __name__ == "__main__":
    main()
