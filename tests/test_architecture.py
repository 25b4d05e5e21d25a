"""The layering of docs/architecture.md, measured from the code's own imports (inside functions too)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"media": set(), "index": set(), "encoders": {"media"}, "retrieval": {"encoders", "media"},
           "training": {"retrieval", "encoders", "media"}, "service": {"index", "retrieval", "encoders", "media"}}


def modules() -> dict[str, Path]:
    found = {}
    for package in ALLOWED:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (a `from package import name` counts for the package and for
    `package.name` when that is a module)."""
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets.add(base)
                targets.update(f"{base}.{a.name}" for a in node.names)
        graph[name] = {r for t in targets if (r := resolve(t)) and r != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_imports_point_down_the_layers():
    wrong = [(a, b) for a, targets in import_graph().items() for b in targets
             if a.split(".")[0] != b.split(".")[0] and b.split(".")[0] not in ALLOWED[a.split(".")[0]]]
    assert wrong == []


def test_only_the_app_imports_routers():
    wrong = [(a, b) for a, targets in import_graph().items() for b in targets
             if b.startswith("service.routers.") and a != "service.app" and not a.startswith("service.routers")]
    assert wrong == []


def test_the_checker_sees_a_planted_circle_and_an_upward_arrow():
    graph = {"media.a": {"media.b"}, "media.b": {"media.a"}, "encoders.x": {"training.y"}}
    assert cycles(graph) == [["media.a", "media.b"]]
    assert "training" not in ALLOWED["encoders"]
    assert len(import_graph()) > 50  # the real tree was read
