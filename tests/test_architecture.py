"""The import rule of docs/architecture.md, checked on the source: arrows run only downwards
(top -> composition -> stages -> config -> backends -> core), stages import one another only
along the allowed edges, backends import only core, their own seam and the shared backends
modules, and no module cycle exists.

Imports are read from the syntax tree, lazy ones inside functions included: a lazy import that
runs the wrong way is still an arrow the wrong way. Imports under ``if TYPE_CHECKING:`` are
annotations, not arrows.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "beaconlake"

LAYERS = {"core": 0, "backends": 1, "config": 2, "stage": 3, "serve": 4, "top": 5}
STAGES = ("ingest", "realtime", "convert", "analyze", "schedule", "simulate", "privacy")
# stage -> the other stages it may import
STAGE_EDGES = {
    "schedule": {"convert", "analyze", "privacy"},
    "privacy": {"convert", "ingest", "realtime"},
    "analyze": {"convert"},
    "realtime": {"ingest"},
    "simulate": {"ingest"},
}
SHARED_BACKENDS = {"loader", "pgconn"}  # backends/ modules of no one seam


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in SRC.rglob("*.py")}


def layer(module: str) -> tuple[str, str | None]:
    """(layer, stage or seam) of a beaconlake module."""
    parts = module.split(".")[1:]
    if not parts:
        return "core", None
    head = parts[0]
    if parts[-1] == "settings":  # settings leaves: plain typed structs, importable from anywhere
        return "core", None
    if head in ("cli", "demo", "starter"):
        return "top", None
    if head in ("serve", "up"):
        return "serve", None
    if head in STAGES:
        return "stage", head
    if head == "config":
        return "config", None
    if head == "backends":
        seam = parts[1] if len(parts) > 1 else None
        return "backends", None if seam in SHARED_BACKENDS else seam
    return "core", None


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (its else branch counts)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if _type_checking(node):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def imports(path: Path, name: str) -> set[str]:
    """Every beaconlake module ``path`` imports, lazily or not (``from x import y`` counts as x.y
    when x.y is a module, else as x)."""
    known = modules()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("beaconlake")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("beaconlake"):
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    return {name: imports(path, name) for name, path in modules().items()}


def wrong_way(src: str, dst: str) -> str | None:
    (sl, ss), (dl, ds) = layer(src), layer(dst)
    if LAYERS[dl] > LAYERS[sl]:
        return f"{src} ({sl}) imports {dst} ({dl}): an arrow up"
    if sl == dl == "stage" and ss != ds and ds not in STAGE_EDGES.get(ss, set()):
        return f"{src} (stage {ss}) imports {dst} (stage {ds}): not an allowed stage edge"
    if sl == dl == "backends" and ss != ds and ds is not None:
        return f"{src} (seam {ss}) imports {dst} (seam {ds}): seams are independent"
    return None


def test_every_arrow_runs_downwards():
    problems = sorted(p for src, dsts in graph().items() for dst in dsts if (p := wrong_way(src, dst)))
    assert not problems, "\n".join(problems)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_no_module_cycle():
    found = cycles(graph())
    assert not found, "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("src,dst,expected", [
    ("beaconlake.backends.counters.redis", "beaconlake.realtime.stats", "an arrow up"),
    ("beaconlake.ingest.deliver", "beaconlake.realtime.consumer", "not an allowed stage edge"),
    ("beaconlake.backends.highlevel.postgres", "beaconlake.backends.pgconn", None),
    ("beaconlake.backends.engine.duckdb", "beaconlake.backends.catalog.sql", "seams are independent"),
    ("beaconlake.config", "beaconlake.convert.run", "an arrow up"),
    ("beaconlake.config", "beaconlake.convert.settings", None),
    ("beaconlake.schedule.run", "beaconlake.convert.run", None),
    ("beaconlake.serve.app", "beaconlake.ingest.collector.events", None),
])
def test_the_rule_itself(src, dst, expected):
    """The checker catches the arrows the redesign removed (it would have failed before)."""
    problem = wrong_way(src, dst)
    assert (problem is None) if expected is None else (expected in problem)


def test_type_checking_imports_are_not_arrows_but_lazy_ones_are():
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import beaconlake.serve.app\nelse:\n    import beaconlake.types\n"
        "def f():\n    import beaconlake.convert.run\n")
    found = {a.name for n in _runtime_nodes(tree) if isinstance(n, ast.Import) for a in n.names}
    assert found == {"beaconlake.types", "beaconlake.convert.run"}


def test_a_cycle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
