"""Report rendering benchmark; prints its figures.

Renders the HTML page of every executed stage notebook of a run folder again (`thinkalike_ml.reports.render_stage_html`,
what the runner does in the background while the next stage runs) and prints, per page, the CPU seconds and the page
size, and the total. CPU time, not wall time: the runner renders on a thread next to the stage's kernel, so on a loaded
machine the wall time says little. The first page is rendered once before timing (imports and the template, paid once
per run by the runner).

With `--check`, each new page is also compared with the page the run wrote: byte for byte, and as a document (the new
page read and written by BeautifulSoup's html.parser, as nbconvert's exporter does, against the stored page).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_reports.py reports/<run id> [--check]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from thinkalike_ml.reports import render_stage_html


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a run folder (with notebooks/ and html/)")
    p.add_argument("--check", action="store_true", help="compare each page with the one the run wrote")
    a = p.parse_args(argv)
    notebooks = sorted((a.run/"notebooks").glob("*.ipynb"))
    if not notebooks: raise SystemExit(f"no executed notebooks in {a.run/'notebooks'}")
    render_stage_html(notebooks[0], "warm-up")
    total, rows = 0.0, []
    for nb in notebooks:
        t0 = time.process_time()
        page = render_stage_html(nb, nb.stem)
        cpu = time.process_time() - t0
        total += cpu
        row = f"{nb.stem:<28} {cpu:7.2f} s CPU {len(page) / 2**20:7.2f} MiB"
        stored = a.run/"html"/f"{nb.stem}.html"
        if a.check and stored.exists():
            import html
            from bs4 import BeautifulSoup
            old = stored.read_text()
            page = render_stage_html(nb, html.unescape(old[old.index("<title>") + 7: old.index("</title>")]))  # the run's own title
            row += f"   same bytes: {page == old!s:<5}   same document: {str(BeautifulSoup(page, features='html.parser')) == old}"
        rows.append(row)
    print("\n".join(rows))
    print(f"{len(notebooks)} pages: {total:.2f} s CPU")


if __name__ == "__main__":
    main()
