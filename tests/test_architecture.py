"""ARCHITECTURE.md's layer table is the code's: every module listed once, imports only downwards,
no module importing a shell, no import inside a function without a ``# lazy:`` reason. Pure source
analysis (ast): no module is imported."""
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


# The comment a function-level import carries, with its reason (e.g. "keeps TensorFlow out of --help").
LAZY_MARK = re.compile(r"# lazy: \S")


def unmarked_lazy_imports(path: Path) -> list[str]:
    """"line: source" of every import inside a function whose line carries no ``# lazy: <reason>``."""
    lines = path.read_text().splitlines()
    found = set()
    for func in ast.walk(ast.parse(path.read_text())):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found |= {node.lineno for node in ast.walk(func) if isinstance(node, (ast.Import, ast.ImportFrom))}
    return [f"{n}: {lines[n - 1].strip()}" for n in sorted(found) if not LAZY_MARK.search(lines[n - 1])]


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


@pytest.mark.parametrize("module", ["__init__", *MODULES])
def test_function_level_imports_say_why(module):
    """An import inside a function only keeps a heavy library (TensorFlow, LiteRT, mtcnn, matplotlib)
    out of a light import, and its line says so: ``# lazy: <reason>``; every other import is at the top."""
    unmarked = unmarked_lazy_imports(PACKAGE / f"{module}.py")
    assert not unmarked, f"{module}.py imports inside a function without '# lazy: <reason>': {unmarked}"


def test_the_checks_catch_a_violation(tmp_path):
    """The analysis sees an upward import hidden inside a function, and a shell."""
    src = tmp_path / "bad.py"
    src.write_text('def f():\n    from mfn_tf2.training import run\n    from mfn_tf2 import train\n\n\n'
                   'if __name__ == "__main__":\n    f()\n')
    assert kit_imports(src) == {"training", "train"}
    assert is_shell(src)


def test_the_lazy_check_catches_an_unmarked_import(tmp_path):
    """Only the function-level imports without a reason are named: not a marked one, not a top-level one."""
    src = tmp_path / "lazy.py"
    src.write_text("import os\n\n\ndef f():\n"
                   "    import json\n"
                   "    from mfn_tf2.backend import tf  # lazy: keeps TensorFlow out of --help\n"
                   "    import math  # lazy:\n\n"
                   "    async def g():\n        import re  # a comment, not a reason\n")
    assert unmarked_lazy_imports(src) == ["5: import json", "7: import math  # lazy:",
                                          "10: import re  # a comment, not a reason"]
