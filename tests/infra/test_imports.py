"""The import graph, read from the source with ast (imports inside functions included): no cycle
among modules, the features (ingest, delivery, exports, imports) import nothing from one another, and the
local stack and the API document import one way (local → apidoc, never back).

The features meet only through the base modules below them (braze/, queue, http_answers,
delivery_model, config, aws, …); an import hidden inside a function counts as much as one at the
top, so a cycle cannot be dodged by deferring it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "shared"
PACKAGE = "braze_forwarder"
FEATURES = ("ingest", "delivery", "exports", "imports")
# Top-level code of the repository beside the layer's package, with where it is found.
TREES: dict[str, Path] = {
    PACKAGE: LAYER / PACKAGE,
    "functions": ROOT / "functions",
    "local": ROOT / "local",
    "apidoc": ROOT / "apidoc",
    "soak": ROOT / "soak",
    "cli": ROOT / "cli",
    "bench": ROOT / "bench",
    "sam_template": ROOT / "sam_template.py",
}


def module_files() -> dict[str, Path]:
    """Every module of the trees, by dotted name (a package by its own name, for its __init__)."""
    modules: dict[str, Path] = {}
    for folder in TREES.values():
        if folder.is_file():
            modules[folder.stem] = folder
            continue
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder.parent).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """The dotted names each import statement (anywhere in the module) may load, with its line."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:  # `from package import module` loads the module, else the package
                yield f"{target}.{alias.name}", node.lineno


def import_graph() -> dict[str, dict[str, str]]:
    """module → {imported module of the trees: the lines that import it, "12,40"}."""
    files = module_files()
    graph: dict[str, dict[str, int]] = {}
    for module, path in files.items():
        edges: dict[str, list[int]] = {}
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, line in imported_names(tree, module, path.name == "__init__.py"):
            # The longest known module the name starts with: `a.b.c` may be a module or a name in a.b.
            parts = name.split(".")
            while parts and ".".join(parts) not in files:
                parts.pop()
            target = ".".join(parts)
            if target and target != module:
                lines = edges.setdefault(target, [])
                if line not in lines:
                    lines.append(line)
        graph[module] = {target: ",".join(map(str, sorted(lines))) for target, lines in edges.items()}
    return graph


def cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def where(module: str) -> str:
    return str(module_files()[module].relative_to(ROOT))


def feature_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) > 1 and parts[0] == PACKAGE and parts[1] in FEATURES:
        return parts[1]
    return None


def test_the_graph_is_read() -> None:
    graph = import_graph()
    # A few arrows every version of the code has, so a broken reader cannot pass the tests below.
    assert "braze_forwarder.config" in graph["braze_forwarder.delivery.sender"]
    assert "braze_forwarder.braze.validation" in graph["braze_forwarder.ingest.service"]
    assert any(target.startswith("apidoc") for target in graph["local.api_gateway"])


def test_imports_inside_functions_and_relative_imports_count() -> None:
    tree = ast.parse("def f():\n    from braze_forwarder.delivery import sender\nfrom . import queue\nimport aws\n")
    names = {name for name, _ in imported_names(tree, "braze_forwarder.config", is_package=False)}
    assert names == {"braze_forwarder.delivery.sender", "braze_forwarder.queue", "aws"}


def test_no_import_cycle() -> None:
    graph = import_graph()
    report = []
    for component in cycles(graph):
        members = set(component)
        arrows = [
            f"    {where(source)}:{line} → {target}"
            for source in component
            for target, line in sorted(graph[source].items())
            if target in members
        ]
        report.append(" ⇄ ".join(component) + "\n" + "\n".join(arrows))
    assert not report, "import cycles:\n" + "\n".join(report)


def test_features_import_nothing_from_one_another() -> None:
    graph = import_graph()
    crossings = [
        f"{where(source)}:{line} ({feature_of(source)}) → {target} ({feature_of(target)})"
        for source, edges in sorted(graph.items())
        for target, line in sorted(edges.items())
        if feature_of(source) and feature_of(target) and feature_of(source) != feature_of(target)
    ]
    assert not crossings, "features importing one another (meet through a base module instead):\n" + "\n".join(
        crossings
    )


def test_features_are_not_imported_by_base_modules() -> None:
    """The arrows point down: a base module of the package (config, queue, braze/, …) is below
    every feature and imports none of them."""
    graph = import_graph()
    upward = [
        f"{where(source)}:{line} → {target}"
        for source, edges in sorted(graph.items())
        if source.startswith(PACKAGE + ".") and feature_of(source) is None
        for target, line in sorted(edges.items())
        if feature_of(target)
    ]
    assert not upward, "base modules importing a feature:\n" + "\n".join(upward)


def test_the_package_imports_nothing_outside_it() -> None:
    """The layer is deployed alone: its package cannot import the repository's other code."""
    graph = import_graph()
    outside = [
        f"{where(source)}:{line} → {target}"
        for source, edges in sorted(graph.items())
        if source.split(".")[0] == PACKAGE
        for target, line in sorted(edges.items())
        if target.split(".")[0] != PACKAGE
    ]
    assert not outside, "the layer's package importing code the layer does not ship:\n" + "\n".join(outside)


def test_apidoc_does_not_import_the_local_stack() -> None:
    """The local stack serves the API document; the document is built without the local stack."""
    graph = import_graph()
    back = [
        f"{where(source)}:{line} → {target}"
        for source, edges in sorted(graph.items())
        if source.split(".")[0] == "apidoc"
        for target, line in sorted(edges.items())
        if target.split(".")[0] == "local"
    ]
    assert not back, "apidoc importing local (local imports apidoc; the arrow goes one way):\n" + "\n".join(back)


def test_each_function_uses_one_feature() -> None:
    """A Lambda handler is the entry point of one feature; what two handlers share is a base module."""
    graph = import_graph()
    mixed = {}
    for source, edges in sorted(graph.items()):
        if source.split(".")[0] == "functions":
            features = {feature_of(target) for target in edges} - {None}
            if len(features) > 1:
                mixed[where(source)] = sorted(
                    f"{target}:{line}" for target, line in edges.items() if feature_of(target)
                )
    assert not mixed, f"handlers importing more than one feature: {mixed}"
