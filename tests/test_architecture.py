"""The package's module graph has no import cycle: every ``import`` and ``from ... import`` inside
``chipnet_zoo``, at module level or inside functions (those were how the cycles were hidden), read with ``ast``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import chipnet_zoo

PACKAGE = "chipnet_zoo"
ROOT = Path(chipnet_zoo.__file__).resolve().parent

#: Cycles allowed in the package (each as the set of its modules): none. A new one fails the test.
KNOWN_CYCLES: set[frozenset[str]] = set()


def _module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of chipnet_zoo it imports}``; importing ``a.b.c`` also runs ``a`` and ``a.b``, but a
    package's ``__init__`` is counted only where it is named, so the edges are the modules actually named."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}

    def known(name: str) -> str | None:
        while name:
            if name in modules:
                return name
            name = name.rpartition(".")[0]
        return None

    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                # ``from pkg import sub`` names the submodule ``pkg.sub`` when it is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                if target.startswith(PACKAGE) and (found := known(target)) and found != module:
                    graph[module].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "chipnet_zoo.budget" in graph["chipnet_zoo.mask"]  # module level
    assert "chipnet_zoo.models" in graph["chipnet_zoo.mask"]  # inside a function


def test_no_import_cycle_in_the_package():
    found = cycles(import_graph())
    unexpected = [c for c in found if frozenset(c) not in KNOWN_CYCLES]
    assert not unexpected, "import cycles: " + "; ".join(" <-> ".join(c) for c in unexpected)
    stale = KNOWN_CYCLES - {frozenset(c) for c in found}
    assert not stale, f"cycles gone, remove them from KNOWN_CYCLES: {stale}"
    assert not [c for c in KNOWN_CYCLES if any(m.startswith(f"{PACKAGE}.registry") for m in c)]


def test_registry_layers_point_one_way():
    """keys/integrity -> index -> card -> local/hub -> mask_registry: no module imports one above it, and
    neither backend imports the other or ``MaskRegistry``."""
    graph = import_graph()
    layer = {"keys": 0, "integrity": 0, "index": 1, "card": 2, "local": 3, "hub": 3, "mask_registry": 4}
    reg = f"{PACKAGE}.registry"
    for name, level in layer.items():
        for dep in graph[f"{reg}.{name}"]:
            if dep.startswith(f"{reg}."):
                dep_name = dep.rsplit(".", 1)[1]
                assert layer[dep_name] < level, f"registry.{name} imports registry.{dep_name} (same or higher layer)"
            else:
                assert dep != reg, f"registry.{name} imports the registry package itself"
    outside = {m for m in graph if not m.startswith(reg) and m != PACKAGE}
    for module in outside - {f"{PACKAGE}.cli.registry"}:
        assert not {d for d in graph[module] if d.startswith(f"{reg}.")} - {f"{reg}.mask_registry"}, (
            f"{module} reaches into the registry's internals; import from chipnet_zoo.registry")


def test_in_the_registry_only_hub_and_card_import_huggingface_hub():
    for path in (ROOT / "registry").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        if any(n.split(".")[0] == "huggingface_hub" for n in names):
            assert path.stem in ("hub", "card"), path


def _documented_layers() -> list[str]:
    """The module list of docs/architecture.md's layout block, in order (``name.py`` or ``folder/``)."""
    text = (ROOT.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = text.split("```", 2)[1]
    names = re.findall(r"^([A-Za-z_][\w]*)(?:\.py|/)\s", block, flags=re.M)
    return [n for n in names if n != "cli"] + ["cli"]


def test_modules_import_only_the_layers_documented_above_them():
    layers = _documented_layers()
    top = {m.split(".")[1] for m in import_graph() if m.count(".") >= 1}
    assert top - {"__main__", "_version"} <= set(layers), f"undocumented: {top - set(layers)}"
    rank = {name: i for i, name in enumerate(layers)}

    def layer(module: str) -> int | None:
        parts = module.split(".")
        return rank.get(parts[1]) if len(parts) > 1 else None

    upward = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                    if layer(a) is not None and layer(b) is not None and layer(b) > layer(a))
    assert not upward, "imports of a layer listed below (docs/architecture.md): " + "; ".join(upward)
