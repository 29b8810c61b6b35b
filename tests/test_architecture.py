"""ARCHITECTURE.md's layer table is the code's: every module listed once, imports only downwards,
no module importing a shell. Pure source analysis (ast): no module is imported."""
import ast
import re
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "mfn_tf2"


def layer_table() -> dict[str, int]:
    """{module: layer} from the table of ARCHITECTURE.md ("| 2 library | ... | `a` `b` |")."""
    layers = {}
    for line in (REPO / "ARCHITECTURE.md").read_text().splitlines():
        m = re.match(r"\| (\d) \w+ \|.*\| (`.*`) \|$", line)
        if m:
            for name in re.findall(r"`(\w+)`", m.group(2)):
                assert name not in layers, f"{name} listed twice in ARCHITECTURE.md"
                layers[name] = int(m.group(1))
    return layers


def kit_imports(path: Path) -> set[str]:
    """Modules of the kit a source file imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "mfn_tf2":
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mfn_tf2."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("mfn_tf2.")}
    return names & {p.stem for p in PACKAGE.glob("*.py")}


def is_shell(path: Path) -> bool:
    """A ``python -m mfn_tf2.X`` command: it has an ``if __name__ == "__main__"`` block."""
    return '\nif __name__ == "__main__":' in path.read_text()


MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
SHELL_LAYER = 4


def test_every_module_is_in_the_table_once():
    layers = layer_table()
    assert sorted(layers) == MODULES, ("ARCHITECTURE.md and mfn_tf2/ differ: "
                                       f"unlisted {sorted(set(MODULES) - set(layers))}, "
                                       f"gone {sorted(set(layers) - set(MODULES))}")


@pytest.mark.parametrize("module", MODULES)
def test_imports_go_down_only(module):
    layers = layer_table()
    upward = {name: layers[name] for name in kit_imports(PACKAGE / f"{module}.py")
              if layers.get(name, -1) > layers[module]}
    assert not upward, f"{module} (layer {layers[module]}) imports higher layers: {upward}"


def test_no_import_circle():
    """No module reaches itself through the kit's imports (top-level or inside functions)."""
    graph = {m: kit_imports(PACKAGE / f"{m}.py") - {m} for m in MODULES}

    def reachable(start: str) -> set[str]:
        seen, todo = set(), list(graph[start])
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo += graph.get(name, ())
        return seen

    circles = [m for m in MODULES if m in reachable(m)]
    assert not circles, f"modules in an import circle: {circles}"


def test_shells_are_the_top_layer_and_nothing_imports_one():
    layers = layer_table()
    shells = {m for m in MODULES if is_shell(PACKAGE / f"{m}.py")}
    assert shells == {m for m, layer in layers.items() if layer == SHELL_LAYER} - {"cli"}
    for path in [*PACKAGE.glob("*.py")]:
        imported = kit_imports(path) & shells
        assert not imported, f"{path.name} imports the shell(s) {sorted(imported)}"


def test_the_checks_catch_a_violation(tmp_path):
    """The analysis sees an upward import hidden inside a function, and a shell."""
    src = tmp_path / "bad.py"
    src.write_text('def f():\n    from mfn_tf2.training import run\n    from mfn_tf2 import train\n\n\n'
                   'if __name__ == "__main__":\n    f()\n')
    assert kit_imports(src) == {"training", "train"}
    assert is_shell(src)
