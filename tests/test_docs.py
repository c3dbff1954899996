"""The documentation site (mkdocs.yml, docs/): it builds with warnings as errors, its API reference
documents every public function, and every row of the lecture map (docs/lecture_map.yml) points
at code and tests that exist.

Everything is discovered when the test runs (public functions from the sources, rows from the
map), so adding or removing a function or a row needs no change here. The build takes about ten
seconds; it is skipped when the docs tools are not installed (``pip install -e ".[docs]"``).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOOK = ROOT / "docs" / "_hooks" / "lecture_map.py"
# the packages whose every public function must appear in the API reference
DOCUMENTED = ("nn", "models", "optim")
SKIP_REASON = 'the docs tools are not installed: pip install -e ".[docs]" (the dev extra has them)'


def _hook():
    """docs/_hooks/lecture_map.py, loaded by path (it is not a package module)."""
    pytest.importorskip("yaml", reason=SKIP_REASON)
    spec = importlib.util.spec_from_file_location("lecturenn_docs_hook", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lecture_map():
    hook = _hook()
    return hook, hook.load_map()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    for name in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(name, reason=SKIP_REASON)
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def _public_functions() -> list[str]:
    """Dotted paths of the public functions defined (not imported) at module level in
    lecturenn/{nn,models,optim}/*.py. Private modules (``_name.py``) are internal and skipped."""
    found = []
    for package in DOCUMENTED:
        for path in sorted((ROOT / "lecturenn" / package).glob("*.py")):
            if path.stem.startswith("_") and path.stem != "__init__":
                continue
            module = f"lecturenn.{package}" + ("" if path.stem == "__init__" else f".{path.stem}")
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            found += [
                f"{module}.{node.name}"
                for node in tree.body
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and not node.name.startswith("_")
            ]
    return found


def _ids(html: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', html))


# --- the build ------------------------------------------------------------------------------


def test_every_public_function_is_in_the_api_reference(site):
    functions = _public_functions()
    assert len(functions) > 100, "found suspiciously few public functions"
    documented = set()
    for page in (site / "api").glob("*.html"):
        documented |= _ids(page.read_text(encoding="utf-8"))
    missing = [f for f in functions if f not in documented]
    assert not missing, f"public functions missing from the API reference: {missing}"


def test_lecture_map_pages_have_every_row_and_rendered_math(site, lecture_map):
    hook, data = lecture_map
    pages = {
        key: site / Path(lec["page"]).with_suffix(".html") for key, lec in data["lectures"].items()
    }
    html = {key: path.read_text(encoding="utf-8") for key, path in pages.items()}
    html["overview"] = (site / "lectures" / "index.html").read_text(encoding="utf-8")
    for key, text in html.items():
        # pymdownx.arithmatex's markup, which the vendored KaTeX typesets in the browser
        math = re.findall(r'<(span|div) class="arithmatex">\\[(\[]', text)
        assert math, f"lecture map page {key!r} has no math markup"
        assert "javascripts/katex/katex.min.js" in text and "javascripts/render-math.js" in text
        assert "stylesheets/katex/katex.min.css" in text
    for row in data["rows"]:
        key = row["sources"][0]["lecture"]
        assert f'id="{row["id"]}"' in html[key], f"row {row['id']!r} is not on its page"
        for path in row["code"]:
            # a resolved cross-reference into the API reference (unresolved ones fail the build)
            assert re.search(rf'href="\.\./api/\w+\.html#{re.escape(path)}"', html[key]), path
    for asset in ("javascripts/katex/katex.min.js", "stylesheets/katex/katex.min.css"):
        assert (site / asset).is_file()
    assert list((site / "stylesheets" / "katex" / "fonts").glob("*.woff2"))


def test_no_page_shows_a_path_of_the_development_machine(site):
    leaked = [
        str(page.relative_to(site))
        for page in site.rglob("*.html")
        if "/work/" in page.read_text(encoding="utf-8")
    ]
    assert not leaked


# --- the lecture map ------------------------------------------------------------------------


def _resolve(hook, path: str):
    if hook.is_module(path):
        return importlib.import_module(path)
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_every_row_names_code_that_exists(lecture_map):
    hook, data = lecture_map
    for row in data["rows"]:
        assert row["code"], f"row {row['id']!r} names no code"
        for path in row["code"]:
            assert path.startswith("lecturenn."), path
            try:
                obj = _resolve(hook, path)
            except (ImportError, AttributeError) as error:
                pytest.fail(f"row {row['id']!r}: {path} does not resolve: {error}")
            assert callable(obj) or hook.is_module(path), (
                f"{path} is neither a function nor a module"
            )


def test_every_row_names_test_functions_that_exist(lecture_map):
    hook, data = lecture_map
    defined: dict[str, set[str]] = {}
    for row in data["rows"]:
        assert row["tests"], f"row {row['id']!r} names no test"
        for ref in row["tests"]:
            path, name = hook.split_test(ref)
            assert path.startswith("tests/") and (ROOT / path).is_file(), f"{ref}: no such file"
            if path not in defined:
                tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
                defined[path] = {
                    node.name
                    for node in tree.body
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                }
            assert name.startswith("test") and name in defined[path], f"{ref}: no such test"


def test_the_map_has_no_other_problem(lecture_map):
    hook, data = lecture_map
    assert hook.problems(data) == []
    for row in data["rows"]:
        for command in row["gradcheck"]:
            for config in hook.configs_named(command):
                assert (ROOT / config).is_file(), f"{command}: {config} does not exist"


def test_getting_started_copies_the_readme_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    page = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    for heading in ("## Quickstart", "## Tests"):
        section = readme.split(heading, 1)[1]
        command = re.search(r"```bash\n(.*?)\n```", section, re.S).group(1)
        assert command in page, f"docs/getting-started.md lacks the README's {heading} command"
