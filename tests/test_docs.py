"""The documentation: the site builds with ``mkdocs build --strict`` (offline), the README's links
point at files that exist, and what the pages name is real (commands, import paths, the layers)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import warnings

import pytest
from conftest import REPO
from test_layout import LAYERS, MODULES

DOCS = REPO / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
README = REPO / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
DOTTED = re.compile(r"\bsemcorr(?:\.[A-Za-z_]\w*)+")
NOT_KEPT = re.compile(r"^#+ Not kept\n(.*?)(?=^#|\Z)", re.S | re.M)  # a section listing names deleted on purpose


def test_site_builds_strict_and_offline(tmp_path):
    missing = [
        name
        for name in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        pytest.skip(f"the docs tools are not installed ({', '.join(missing)}): pip install -e '.[dev]'")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(REPO / "src"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(REPO / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "site" / "reference" / "matching" / "index.html").exists()
    html = (tmp_path / "site" / "reference" / "matching" / "index.html").read_text()
    assert 'id="semcorr.matching.matcher.Matcher"' in html  # the lazy package's names, from their submodules
    for page in (tmp_path / "site").rglob("*.html"):
        text = page.read_text()
        assert "fonts.googleapis.com" not in text and "fonts.gstatic.com" not in text, page


def test_readme_links_point_at_files_that_exist():
    targets = [t for t in LINK.findall(README.read_text()) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert targets  # the front door links into the site
    missing = [t for t in targets if not (REPO / t.split("#")[0]).exists()]
    assert not missing


def test_readme_is_a_front_door():
    assert len(README.read_text().splitlines()) <= 220


def _code(text: str) -> str:
    """The command-line code of a page: inline code spans and code blocks, without Python blocks."""
    shell = FENCE.sub(lambda m: "" if m.group(1) == "python" else m.group(2), text)
    blocks = [line for line in shell.splitlines() if line.startswith("    ")]
    return "\n".join(re.findall(r"`([^`\n]+)`", shell) + blocks)


def test_every_command_named_in_the_docs_exists():
    from semcorr.cli.main import build_parser

    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command").choices or {}
    # `semcorr NAME` after a word is prose, not a command: `from semcorr import`, and quoted messages
    # such as `... os.system, which semcorr never loads`
    named = {
        (str(page.relative_to(REPO)), name)
        for page in [*PAGES, README]
        for name in re.findall(r"(?<![\w.-])(?<![A-Za-z] )semcorr ([a-z][a-z0-9-]*)", _code(page.read_text()))
    }
    assert named
    assert not {(page, name) for page, name in named if name not in commands}


def _resolve(dotted: str) -> object:
    from semcorr._moved import RENAMED

    if dotted in RENAMED:  # an old name: it must still lead somewhere
        dotted = RENAMED[dotted]
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            value = getattr(value, name)
        return value
    raise ModuleNotFoundError(dotted)


def test_python_in_the_docs_parses_and_its_imports_exist():
    imports: set[tuple[str, str]] = set()
    for page in [*PAGES, README]:
        for language, code in FENCE.findall(page.read_text()):
            if language != "python":
                continue
            tree = ast.parse(code, filename=str(page))
            imports |= {
                (node.module or "", alias.name)
                for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)
                for alias in node.names
            }
    assert imports
    missing = []
    for module, name in sorted(imports):
        try:
            _resolve(f"{module}.{name}")
        except (ImportError, AttributeError) as error:
            missing.append(f"from {module} import {name}: {error}")
    assert not missing


def test_dotted_names_in_the_docs_exist():
    """Every ``semcorr.x.y`` the pages name in code resolves (old paths of the moved-names table too,
    through their forwarding modules). Names a page lists under a heading "Not kept" (deleted on
    purpose) must not resolve, unless the docs name them (or a name inside them) elsewhere as they
    are now (`semcorr.cli`, a module then, a package now)."""
    names: set[str] = set()
    gone: set[str] = set()
    for page in [*PAGES, README]:
        text = page.read_text()
        gone |= set(DOTTED.findall(_code("".join(NOT_KEPT.findall(text)))))
        names |= set(DOTTED.findall(_code(NOT_KEPT.sub("", text))))
    assert len(names) > 20
    missing, still_there = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in sorted(names):
            try:
                _resolve(name)
            except (ImportError, AttributeError) as error:
                missing.append(f"{name}: {error}")
        for name in sorted(gone):
            if any(other == name or other.startswith(name + ".") for other in names):
                continue
            try:
                _resolve(name)
            except (ImportError, AttributeError):
                continue
            still_there.append(name)
    assert not missing
    assert not still_there  # listed as not kept, yet importable


def test_the_architecture_page_lists_the_layers_in_order():
    page = (DOCS / "architecture.md").read_text()
    diagram = page.split("## Layers", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    listed = tuple(line.split()[0] for line in diagram.splitlines() if line.startswith("semcorr"))
    assert listed == LAYERS


def test_the_api_reference_covers_every_package_and_module():
    """A package page (``::: semcorr.<package>``) documents all its submodules; top-level modules are
    listed one by one. So a new package or top-level module needs its entry in docs/reference/."""
    pages = "\n".join(page.read_text() for page in (DOCS / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: ([\w.]+)", pages, re.M))
    top = {name for name in MODULES if name.count(".") == 1 and not name.split(".")[1].startswith("_")}
    assert not top - documented - {"semcorr.cli"}
