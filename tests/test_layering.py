"""The package's layering, read from every import statement (function-level ones included):

nn/ imports nothing above it; models/ no data/, train/, experiments/ or the CLI (a model reads no
files); train/ no experiments/ or CLI (it knows no config format); data/ no models/, train/,
experiments/ or CLI; optim/ no models/, train/, experiments/ or CLI; and no module imports itself
through a chain of others (no cycles).
"""

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lecturenn"

# subpackage -> the lecturenn subpackages (or top-level modules) it may not import
FORBIDDEN = {
    "nn": {"models", "train", "experiments", "cli", "data", "optim", "gradcheck"},
    "models": {"data", "train", "experiments", "cli", "gradcheck"},
    "train": {"experiments", "cli"},
    "data": {"models", "train", "experiments", "cli", "optim", "gradcheck"},
    "optim": {"models", "train", "experiments", "cli", "data", "gradcheck"},
}


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(root: Path, path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of a lecturenn module in ``path``."""
    module = _module_name(root, path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # "from lecturenn.train import loop" imports the module lecturenn.train.loop
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                known = (root.parent / Path(*candidate.split("."))).with_suffix(".py").exists() or (
                    root.parent / Path(*candidate.split(".")) / "__init__.py"
                ).exists()
                found.append((node.lineno, candidate if known else base))
    return [(line, name) for line, name in found if name.split(".")[0] == root.name]


def check_layering(root: Path) -> list[str]:
    """Every violation of the rules above in the package at ``root``, one sentence each."""
    problems, graph = [], {}
    for path in sorted(root.rglob("*.py")):
        module = _module_name(root, path)
        edges = _imports(root, path)
        graph[module] = {name for _, name in edges if name != module}
        layer = module.split(".")[1] if module.count(".") >= 1 else None
        for line, name in edges:
            target = name.split(".")[1] if name.count(".") >= 1 else None
            if layer in FORBIDDEN and target in FORBIDDEN[layer]:
                problems.append(f"{path.relative_to(root.parent)}:{line} imports {name}")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph)]
    return problems


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (or a self-loop)."""

    def resolve(name):  # an import of a package reaches its __init__
        return name if name in graph else None

    edges = {m: {t for t in map(resolve, targets) if t} for m, targets in graph.items()}
    index, low, stack, on_stack, components, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return components


def test_the_package_keeps_its_layers_and_has_no_import_cycles():
    assert check_layering(PACKAGE) == []


@pytest.mark.parametrize(
    ("where", "statement", "expected"),
    [
        ("nn/layers.py", "    from lecturenn.train import loop\n", "nn/layers.py"),
        ("models/nplm.py", "import lecturenn.data.text\n", "imports lecturenn.data.text"),
        ("train/loop.py", "from lecturenn.experiments import config\n", "train/loop.py"),
        ("data/text.py", "from lecturenn.models import rnn_lm\n", "data/text.py"),
        ("optim/build.py", "from ..models import base\n", "optim/build.py"),
        ("data/schemes.py", "from lecturenn.data import conll\n", "import cycle"),
    ],
)
def test_an_injected_violation_is_found(tmp_path, where, statement, expected):
    copy = tmp_path / "lecturenn"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / where
    text = target.read_text(encoding="utf-8")
    if statement.startswith("    "):  # a function-level import
        text += "\n\ndef _injected():\n" + statement + "    return loop\n"
    else:
        text += "\n" + statement
    target.write_text(text, encoding="utf-8")
    problems = check_layering(copy)
    assert any(expected in p for p in problems), problems
