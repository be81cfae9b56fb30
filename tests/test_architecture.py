"""The layering: no import cycle among the package's modules (imports inside functions counted),
and the graph IR imports nothing else from the package."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "backpropc"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """{module: the package modules it imports, anywhere in its file}."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        tree = ast.parse(path.read_text())
        for block in [n for n in ast.walk(tree) if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]:
            block.body = []  # imports for annotations only are not imports at run time
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [f"{target}.{a.name}" for a in node.names]
                targets |= {n for n in names if (PACKAGE.parent / (n.replace(".", "/") + ".py")).exists()
                            or (PACKAGE.parent / n.replace(".", "/")).is_dir()} or {target}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("backpropc")}
        found[name] = {t for t in targets if t != name}
    return found


def test_no_import_cycle():
    graph = imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module, path):
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path + [module, target]))
            if target in graph and state.get(target) is None:
                visit(target, path + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_the_graph_ir_imports_nothing_from_the_package():
    assert imports()["backpropc.graph"] == set()
