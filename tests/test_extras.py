"""Optional dependencies: the core install matches two images; each extra's absence is one line naming it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO, data_path

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

from semcorr.extras import EXTRAS  # noqa: E402  (after the skip above)

DISTRIBUTIONS = {"skimage": "scikit-image"}  # import name -> distribution name, where they differ


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ]", requirement, maxsplit=1)[0].lower()


def test_the_extras_table_is_pyprojects():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, (modules, purpose) in EXTRAS.items():
        assert purpose
        wanted = {DISTRIBUTIONS.get(module, module) for module in modules}
        assert {_requirement_name(r) for r in declared[extra]} == wanted, extra


BLOCK_EXTRAS = """
import sys
for name in {modules!r}:
    sys.modules[name] = None   # `import name` raises ImportError, as where the extra is not installed
from semcorr.cli import main
code = main(sys.argv[1:])
print("modules loaded:", sorted(m for m in {modules!r} if sys.modules.get(m) is not None))
sys.exit(code)
"""
EXTRA_MODULES = sorted(
    {module for modules, _ in EXTRAS.values() for module in modules}
    | {"ray.data", "skimage.data", "scipy.io", "pycocotools", "selenium"}
)


def _run_without_extras(*args: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    code = textwrap.dedent(BLOCK_EXTRAS.format(modules=EXTRA_MODULES))
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env, timeout=240
    )


def test_the_core_install_matches_two_images(tmp_path):
    pair = sorted(data_path("pf-willow", "car(G)").glob("*.png"))[:2]
    out = tmp_path / "matches.json"
    result = _run_without_extras(
        "match", *pair, "--points", "100,80", "--model", "baseline", "--out", out, "--show", tmp_path / "matches.png"
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file() and (tmp_path / "matches.png").is_file()
    assert "modules loaded: []" in result.stdout


@pytest.mark.parametrize(
    "args, extra",
    [
        (["demo", "--model", "baseline"], "demo"),
        (["video", "{video}", "--points", "5,5", "--model", "baseline", "--tracks", "{tmp}/t.json"], "video"),
        (["eval", "pf-willow", "--data-root", "{willow}", "--model", "baseline", "--limit", "1"], "eval"),
        (["bench", "--models", "sdxl-turbo", "--random-weights"], "teacher"),
        (["app", "--model", "baseline", "--port", "0"], "app"),
        (["label-studio", "--model", "baseline", "--port", "0"], "app"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(args, extra, tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 64)
    filled = [a.format(video=video, tmp=tmp_path, willow=data_path("pf-willow")) for a in args]
    result = _run_without_extras(*filled)
    lines = [line for line in result.stderr.splitlines() if line.startswith("semcorr:")]
    assert result.returncode == 1, result.stderr
    assert lines and f"pip install 'semcorr[{extra}]'" in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
