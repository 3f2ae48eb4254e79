"""The package's shape, checked from its source (docs/architecture.md):

- no import circle anywhere in ``jaxstyle`` (imports inside functions included: a lazy import is still a
  dependency), and every import goes down the layers: foundation -> nets -> objective -> optim -> methods
  (gatys, fast) -> io (with the fast method's file handling) -> cli, never up;
- no function longer than about 60 lines, argument-parser builders (``register``) aside.
"""

from __future__ import annotations

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "jaxstyle")
MAX_LINES = 60
PARSER_BUILDERS = {"register", "build_parser"}
# Lower layers never import higher ones (same layer: allowed, without circles). I/O sits above the methods in
# the data flow (methods produce, I/O writes) but needs nothing from them; only the CLI joins the two.
LAYERS = {
    "jaxstyle.errors": 0, "jaxstyle.atomic": 0, "jaxstyle._version": 0, "jaxstyle.xla_options": 0,
    "jaxstyle.nets": 1, "jaxstyle.objective": 2, "jaxstyle.colour": 2, "jaxstyle.optim": 3, "jaxstyle.gatys": 4,
    "jaxstyle.io": 5, "jaxstyle.cli": 6, "jaxstyle": 7,
    # The web studio is a front end beside the CLI (it shares the CLI's option table and messages).
    "jaxstyle.studio": 6,
    # The fast method: its network, losses, train step and inference are a method (as gatys); the modules that
    # read and write files (the data stream, model files, checkpoints, the training session) are its I/O.
    "jaxstyle.fast": 4, "jaxstyle.fast.data": 5, "jaxstyle.fast.model_file": 5, "jaxstyle.fast.checkpoints": 5,
    "jaxstyle.fast.session": 5, "jaxstyle.fast.export": 5, "jaxstyle.fast.importers": 5,
}


def modules() -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                name = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                out[name.removesuffix(".__init__")] = path
    return out


def imports(name: str, path: str, known: set) -> set[str]:
    """The jaxstyle modules ``name`` imports (``from . import x`` resolved to the module x where it is one)."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("jaxstyle")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            if not base.startswith("jaxstyle"):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m != name}


def layer(name: str) -> int:
    return max((len(k), v) for k, v in LAYERS.items() if name == k or name.startswith(k + "."))[1]


GRAPH = {n: imports(n, p, set(modules())) for n, p in modules().items()}


def test_no_import_circles():
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node, stack):
        state[node] = 1
        for dep in sorted(GRAPH.get(node, ())):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if dep in GRAPH and not state.get(dep):
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(GRAPH):
        if not state.get(node):
            visit(node, [node])


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_imports_go_down_the_layers(name):
    # A package's __init__ may re-export its own modules; jaxstyle/__init__ is the front door over everything.
    own = modules()[name].endswith("__init__.py")
    up = sorted(d for d in GRAPH[name] if layer(d) > layer(name) and not (own and d.startswith(name + ".")))
    assert not up, f"{name} (layer {layer(name)}) imports {up} from a higher layer"


def long_functions():
    for name, path in sorted(modules().items()):
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in PARSER_BUILDERS:
                length = node.end_lineno - node.lineno + 1
                if length > MAX_LINES:
                    yield f"{name}.{node.name} ({length} lines)"


def test_no_function_is_longer_than_60_lines():
    assert not list(long_functions())
