"""MkDocs hook: render the lecture map (docs/lecture_map.yml) into the pages under docs/lectures/.

A page asks for its part of the map with a marker on a line of its own:

    <!-- lecture-map: overview -->       the table of every entry, on lectures/index.md
    <!-- lecture-map: cs224n-notes -->   the entries of one lecture (a key of `lectures:`)

Each entry becomes a heading (its `id` is the anchor), the lecture sections it comes from, its
equations as display math (typeset in the browser by the vendored KaTeX), a note, and links:
the implementing functions are mkdocstrings cross-references into the API reference, so a
function that disappears makes the strict build fail.

The hook also
- expands nav entries that are globs ("results/*.md") into every matching page, sorted;
- checks the map statically (`problems`): unknown lectures, duplicate ids, test functions that
  the named test file does not define, configs and pages that do not exist. Each problem is a
  warning, so `mkdocs build --strict` fails on it; tests/test_docs.py runs the same check;
- replaces absolute paths of the development machine that a docstring may mention
  (``/work/shared/...``) by a neutral phrase, so the published pages never show them.

Nothing here imports lecturenn: the build reads the sources only.
"""

from __future__ import annotations

import ast
import functools
import glob
import logging
import os
import re
from pathlib import Path

import yaml

log = logging.getLogger("mkdocs.hooks.lecture_map")

DOCS = Path(__file__).resolve().parent.parent
ROOT = DOCS.parent
MAP_PATH = DOCS / "lecture_map.yml"
MARKER = re.compile(r"^<!--\s*lecture-map:\s*([\w-]+)\s*-->\s*$", re.M)
CONFIG_IN_COMMAND = re.compile(r"(configs/[\w./-]+\.toml)")
MACHINE_PATH = re.compile(r"(<code>)?/work/shared(/[\w.\-/]*)?(</code>)?")
ROW_KEYS = {"id", "title", "sources", "math", "text", "code", "tests", "gradcheck", "see"}
REQUIRED = ("id", "title", "sources", "math", "code", "tests")


# --- the map --------------------------------------------------------------------------------


def load_map(path: Path = MAP_PATH) -> dict:
    """The parsed lecture map, with every optional list present (possibly empty)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    for row in data["rows"]:
        for key in ("math", "code", "tests", "gradcheck", "see", "sources"):
            row.setdefault(key, [])
        row.setdefault("text", "")
    data.setdefault("not_covered", [])
    return data


@functools.cache
def _test_functions(path: str) -> frozenset[str]:
    """Names of the module-level functions (tests included) defined in a test file."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"), filename=path)
    return frozenset(
        node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    )


def split_test(ref: str) -> tuple[str, str]:
    """'tests/nn/test_x.py::test_y' -> ('tests/nn/test_x.py', 'test_y')."""
    path, sep, name = ref.partition("::")
    if not sep or not name:
        raise ValueError(f"test reference {ref!r} is not 'tests/FILE.py::test_function'")
    return path, name


def configs_named(command: str) -> list[str]:
    """The config files a `lecturenn gradcheck ...` command names (repository-relative)."""
    return CONFIG_IN_COMMAND.findall(command)


def problems(data: dict, root: Path = ROOT) -> list[str]:
    """Everything wrong with the map that can be seen without importing lecturenn."""
    found: list[str] = []
    lectures = data.get("lectures", {})
    seen: set[str] = set()
    for i, row in enumerate(data.get("rows", [])):
        where = f"row {row.get('id', i)!r}"
        for key in REQUIRED:
            if not row.get(key):
                found.append(f"{where}: missing {key!r}")
        for key in set(row) - ROW_KEYS:
            found.append(f"{where}: unknown key {key!r}")
        if row.get("id") in seen:
            found.append(f"{where}: duplicate id")
        seen.add(row.get("id"))
        for source in row.get("sources", []):
            if source.get("lecture") not in lectures:
                found.append(f"{where}: unknown lecture {source.get('lecture')!r}")
            if not source.get("section"):
                found.append(f"{where}: a source without a section")
        for ref in row.get("tests", []):
            try:
                path, name = split_test(ref)
            except ValueError as error:
                found.append(f"{where}: {error}")
                continue
            if not (root / path).is_file():
                found.append(f"{where}: test file {path} does not exist")
            elif name not in _test_functions(path):
                found.append(f"{where}: {path} defines no function {name}")
        for command in row.get("gradcheck", []):
            if not command.startswith("lecturenn gradcheck "):
                found.append(f"{where}: {command!r} is not a `lecturenn gradcheck` command")
            for config in configs_named(command):
                if not (root / config).is_file():
                    found.append(f"{where}: {config} (in {command!r}) does not exist")
        for page in row.get("see", []):
            if not (root / "docs" / page).is_file():
                found.append(f"{where}: page docs/{page} does not exist")
        for tex in row.get("math", []):
            if "|" in tex:
                found.append(f"{where}: write \\lvert/\\rvert or \\lVert/\\rVert, not '|'")
    for item in data.get("not_covered", []):
        if item.get("lecture") not in lectures:
            found.append(f"not_covered {item.get('what')!r}: unknown lecture")
    for key, lecture in lectures.items():
        if not (root / "docs" / lecture["page"]).is_file():
            found.append(f"lecture {key!r}: page docs/{lecture['page']} does not exist")
    return found


# --- rendering ------------------------------------------------------------------------------


def _relative(target: str, page_src: str) -> str:
    """Link from the page at docs/page_src to docs/target (both docs-relative, with '/')."""
    return os.path.relpath(target, os.path.dirname(page_src) or ".").replace(os.sep, "/")


@functools.cache
def _page_title(page: str) -> str:
    for line in (DOCS / page).read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return page


def _cite(data: dict, source: dict) -> str:
    return f"{data['lectures'][source['lecture']]['cite']}, {source['section']}"


def is_module(path: str, root: Path = ROOT) -> bool:
    """Whether a dotted path names a module or package of the repository (read from files)."""
    base = root.joinpath(*path.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _code_link(path: str) -> str:
    """A cross-reference into the API reference: modules by their full path, functions as
    ``module.function``."""
    label = path if is_module(path) else ".".join(path.split(".")[-2:])
    return f"[`{label}`][{path}]"


def _row_link(data: dict, row: dict, page_src: str) -> str:
    page = data["lectures"][row["sources"][0]["lecture"]]["page"]
    href = f"#{row['id']}" if page == page_src else f"{_relative(page, page_src)}#{row['id']}"
    return f"[{row['title']}]({href})"


def render_row(data: dict, row: dict, page_src: str) -> str:
    out = [f"## {row['title']} {{ #{row['id']} }}", ""]
    cites = "; ".join(_cite(data, s) for s in row["sources"])
    out += [cites, "{: .lecture-source }", ""]
    for tex in row["math"]:
        out += ["$$", tex.strip(), "$$", ""]
    if row["text"]:
        out += [row["text"].strip(), ""]
    out.append("- **Implemented by:** " + ", ".join(_code_link(c) for c in row["code"]))
    out.append(
        "- **Checked by:** "
        + ", ".join(f"`{path}::{name}`" for path, name in map(split_test, row["tests"]))
    )
    if row["gradcheck"]:
        out.append("- **Gradient check:** " + ", ".join(f"`{c}`" for c in row["gradcheck"]))
    if row["see"]:
        out.append(
            "- **See also:** "
            + ", ".join(f"[{_page_title(p)}]({_relative(p, page_src)})" for p in row["see"])
        )
    out.append("")
    return "\n".join(out)


def render_lecture(data: dict, key: str, page_src: str) -> str:
    rows = [r for r in data["rows"] if r["sources"][0]["lecture"] == key]
    out = [render_row(data, row, page_src) for row in rows]
    also = sorted(
        (
            (row, source)
            for row in data["rows"]
            for source in row["sources"][1:]
            if source["lecture"] == key
        ),
        key=lambda pair: pair[1]["section"],
    )
    if also:
        out += ["## Also presented in this lecture { #also-presented }", ""]
        out += [
            "These entries are listed under the lecture that presents them first; this lecture "
            "covers them too.",
            "",
        ]
        out += [f"- {source['section']}: {_row_link(data, row, page_src)}" for row, source in also]
        out.append("")
    missing = [item for item in data["not_covered"] if item["lecture"] == key]
    if missing:
        out += ["## Not in the library { #not-in-the-library }", ""]
        out += [f"- {item['section']}: {item['what']}: {item['why']}" for item in missing]
        out.append("")
    return "\n".join(out)


def render_overview(data: dict, page_src: str) -> str:
    out = [
        "| Entry | Where in the lectures | Implemented by | Gradient check |",
        "|---|---|---|---|",
    ]
    for row in data["rows"]:
        cites = "<br>".join(_cite(data, s) for s in row["sources"])
        code = ", ".join(_code_link(c) for c in row["code"][:2])
        if len(row["code"]) > 2:
            code += f" and {len(row['code']) - 2} more"
        check = "<br>".join(f"`{c}`" for c in row["gradcheck"]) or "—"
        out.append(f"| {_row_link(data, row, page_src)} | {cites} | {code} | {check} |")
    out.append("")
    return "\n".join(out)


# --- mkdocs events --------------------------------------------------------------------------


def _expand_nav(items, docs_dir: Path):
    out = []
    for item in items:
        if isinstance(item, dict):
            out.append({k: _expand_value(v, docs_dir) for k, v in item.items()})
        else:
            out.append(_expand_value(item, docs_dir))
    return out


def _expand_value(value, docs_dir: Path):
    if isinstance(value, list):
        return _expand_nav(value, docs_dir)
    if isinstance(value, str) and "*" in value:
        matches = sorted(
            Path(p).relative_to(docs_dir).as_posix() for p in glob.glob(str(docs_dir / value))
        )
        if not matches:
            log.warning("nav: %r matches no page", value)
        return matches
    return value


def on_config(config):
    docs_dir = Path(config["docs_dir"])
    if config.get("nav"):
        config["nav"] = _expand_nav(config["nav"], docs_dir)
    for problem in problems(load_map()):
        log.warning("lecture map: %s", problem)
    return config


def on_page_markdown(markdown, page, config, files):
    if not MARKER.search(markdown):
        return markdown
    data = load_map()
    src = page.file.src_uri

    def replace(match: re.Match) -> str:
        key = match.group(1)
        if key == "overview":
            return render_overview(data, src)
        if key not in data["lectures"]:
            log.warning("%s: unknown lecture-map marker %r", src, key)
            return ""
        return render_lecture(data, key, src)

    return MARKER.sub(replace, markdown)


def on_page_content(html, page, config, files):
    return MACHINE_PATH.sub("the shared data folder", html)
