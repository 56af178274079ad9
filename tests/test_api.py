"""The package-level Python API: lazy imports, the names, and docs/api.md run as written."""

from __future__ import annotations

import re
import subprocess
import sys

from helpers import REPO


def _python(code: str, cwd=REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=cwd
    )


def test_import_is_light_and_names_resolve_to_the_commands() -> None:
    done = _python(
        "import sys\n"
        "import bnnconvert\n"
        "heavy = sorted(m for m in ('tensorflow', 'larq', 'numpy') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
        "import bnnconvert.export  # the submodule must not hide the function\n"
        "from bnnconvert.export import ExportResult\n"
        "print(bnnconvert.export.__module__, bnnconvert.export.__name__)\n"
        "print(bnnconvert.inspect.__name__, bnnconvert.bench.__name__)\n"
        "print(bnnconvert.ExportResult is ExportResult, bnnconvert.validate.__name__)\n"
        "print('tensorflow' in sys.modules)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "HEAVY []",
        "bnnconvert.export export",
        "inspect_model bench",
        "True validate",
        "False",
    ]


def test_unknown_names_are_attribute_errors() -> None:
    import bnnconvert

    try:
        bnnconvert.no_such_thing  # noqa: B018
    except AttributeError as e:
        assert str(e) == "module 'bnnconvert' has no attribute 'no_such_thing'"
    else:
        raise AssertionError("expected an AttributeError")
    assert {"export", "validate", "inspect", "bench", "BenchResult"} <= set(dir(bnnconvert))


def test_docs_api_examples_run_as_written(tmp_path) -> None:
    """Every ```python block of docs/api.md, in order, in one interpreter, from a fresh folder.

    The folder links ``models`` to the repository's, so the examples' relative
    paths work as they do from the repository's root, and their outputs land
    in ``tmp_path``.
    """
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "api.md").read_text(), re.S)
    assert len(blocks) >= 5
    (tmp_path / "models").symlink_to(REPO / "models")
    script = tmp_path / "api_examples.py"
    script.write_text("\n".join(blocks))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ExportResult('api-demo/digits/model.tflite', target='x86_64'" in done.stdout
    assert "<BenchResult local: 1 model(s) × 1 config(s), complete, fastest" in done.stdout
    assert (tmp_path / "api-demo" / "bench" / "bench.html").is_file()
