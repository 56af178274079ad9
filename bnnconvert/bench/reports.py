"""Write the three bench reports, each atomically."""

from __future__ import annotations

import json
from pathlib import Path

from bnnconvert.atomic import write_text
from bnnconvert.bench.report_html import render_html
from bnnconvert.bench.report_md import render_markdown
from bnnconvert.bench.result import BenchResult


def write_reports(result: BenchResult, outdir: Path | str) -> dict[str, Path]:
    """Write ``bench.json``, ``bench.md`` and ``bench.html`` into ``outdir``.

    Returns:
        {"json": path, "md": path, "html": path}
    """
    outdir = Path(outdir)
    paths = {
        "json": outdir / "bench.json",
        "md": outdir / "bench.md",
        "html": outdir / "bench.html",
    }
    write_text(paths["json"], json.dumps(result.to_dict(), indent=2) + "\n")
    write_text(paths["md"], render_markdown(result))
    write_text(paths["html"], render_html(result))
    return paths
