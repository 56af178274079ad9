"""Write the three bench reports, each atomically."""

from __future__ import annotations

from pathlib import Path

from bnnconvert.atomic import write_text
from bnnconvert.bench.report_html import render_html
from bnnconvert.bench.report_md import render_markdown
from bnnconvert.bench.result import BenchResult
from bnnconvert.json_report import report_json


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
    write_text(paths["json"], report_json(result.to_dict()) + "\n")
    write_text(paths["md"], render_markdown(result))
    write_text(paths["html"], render_html(result))
    return paths
