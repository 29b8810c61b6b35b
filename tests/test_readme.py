"""README.md's commands, checked the way a user meets them on a fresh clone (run from the repository root).

Which commands: every line of a fenced block labelled ``sh`` (backslash continuations joined, ``#`` comments
and ``VAR=value`` prefixes taken off), the ``python -m mfn_tf2...`` commands that ``make`` targets named in the
README run, and the ``python -m mfn_tf2.X`` / ``make X`` spans inline in the prose. Blocks not labelled ``sh``
(the diagram, a sample table, the Python example) must hold no command.

How each is checked:

- ``python -m mfn_tf2.X ARGS``: dry run. X's own parser reads ARGS and the configs its ``main`` builds from
  them are built (the rules a config checks run too); no training, export or measurement starts. The two
  tools without a separate parser are cheap and are actually run: ``mfn_tf2.model`` (its printed cost must be
  the README's) and ``mfn_tf2.data pack`` (on a few bundled faces). Every ``--flag`` written anywhere, in
  blocks or inline, must be in the ``--help`` of the tool it is written with.
- ``python SCRIPT.py ARGS``: the script is in the repository and every flag is in its ``--help``.
- ``make X``: X is a target of the Makefile and ``make -n X`` accepts it.

The rule for the paths a command names (a path: has a ``/`` or a file extension). Each one must be
(1) in a fresh clone (tracked by git: ``data/lfw_demo/...``, ``benchmarks/...``), or
(2) written by this command (its output flag or output folder), or
(3) written by another command of the README (``weights/`` by the training command, ``export/mine`` by the
    export, ``demo_out`` by ``make demo``: its ``--out`` default), or
(4) a placeholder the user fills in: its first component is written in CAPITALS (``FACES/``, ``LFW/``, ...)
    and the README explains it, in backticks in the prose or in a ``#`` comment of a command block.
Anything else (a lowercase folder that appears from nowhere) fails, with the command named.
"""
import ast
import contextlib
import importlib
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, make_face_tree, run_cli, run_main
from mfn_tf2 import cli
from mfn_tf2 import config as C

README = (REPO / "README.md").read_text()
FENCE = re.compile(r"^ *```(\w*)\n(.*?)^ *```", re.S | re.M)
# The configs each tool's main builds from its parsed flags (the dry run builds them too).
CONFIGS = {"evaluate": {"eval": C.EvalConfig}, "calibrate": {"eval": C.EvalConfig},
           "export": {"export": C.ExportConfig, "eval": C.EvalConfig, "data": C.DataConfig},
           "benchmark": {"model": C.ModelConfig, "data": C.DataConfig, "train": C.TrainConfig}}
OUTPUT_FLAGS = ("out", "save_model_directory", "plot", "json", "markdown", "android_assets", "out_dir")
RUN_FOR_REAL = ("model", "data")  # no parser apart from the work: cheap, so run


def shell_commands(text: str) -> list[list[str]]:
    """The commands of a shell block: continuations joined, comments and VAR=value prefixes dropped."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            words = words[1:]
        if words:
            commands.append(words)
    return commands


def make_recipe(target: str) -> list[list[str]]:
    """The ``$(PY) ...`` commands of a Makefile target, as ``python ...``."""
    recipe = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)*)", (REPO / "Makefile").read_text(), re.M)
    assert recipe, f"Makefile has no target {target}"
    return [["python", *shlex.split(line.strip())[1:]] for line in recipe.group(1).splitlines()
            if line.strip().startswith("$(PY) -m mfn_tf2.")]


BLOCKS = [(lang, body) for lang, body in FENCE.findall(README)]
COMMANDS = [words for lang, body in BLOCKS if lang == "sh" for words in shell_commands(body)]
MAKE_TARGETS = sorted({w[1] for w in COMMANDS if w[0] == "make"}
                      | set(re.findall(r"`make ([\w-]+)`", README)))
RUN = [w for w in COMMANDS if w[0] == "python"] + [c for t in MAKE_TARGETS for c in make_recipe(t)]
INLINE = [shlex.split(span) for span in re.findall(r"`(python -m mfn_tf2\.\w+[^`]*)`", README)]


def tool(words: list[str]) -> str:
    """``python -m mfn_tf2.train ...`` -> "train"; ``python benchmarks/x.py`` -> "benchmarks/x.py"."""
    return words[2].removeprefix("mfn_tf2.") if words[1] == "-m" else words[1]


def args_of(words: list[str]) -> list[str]:
    return words[3:] if words[1] == "-m" else words[2:]


def dry_run(module: str, args: list[str]):
    """X's parser on args, and X's configs built from them; returns the namespace. Fails the test with
    the tool's own error line when it rejects them."""
    mod = importlib.import_module(f"mfn_tf2.{module}")
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            if module == "train":
                mod.parse(args)  # the configs and the rules between arguments
                return mod.build_parser().parse_args(args)
            preset = cli.pre_parse(args, preset=(C.MODEL_PRESETS, "keras_original")).preset
            parser = mod.build_parser(preset) if module == "benchmark" else mod.build_parser()
            ns = parser.parse_args(args)
            cli.build_configs(parser, ns, CONFIGS.get(module, {}))
            return ns
    except SystemExit:
        pytest.fail(f"README: python -m mfn_tf2.{module} {shlex.join(args)}\n  {err.getvalue().strip()}")


def outputs(module: str, ns) -> set[str]:
    """The paths a parsed command writes."""
    found = {str(getattr(ns, k)) for k in OUTPUT_FLAGS if getattr(ns, k, None)}
    if module == "align":
        found.add(ns.folders[-1])
    return {str(Path(p).resolve().relative_to(REPO)) if Path(p).is_absolute() else p.rstrip("/") for p in found}


def help_flags(words: list[str]) -> set[str]:
    """Every --flag the tool's --help shows (for ``data``, its subcommand's)."""
    name, sub = tool(words), [a for a in args_of(words)[:1] if not a.startswith("-") and tool(words) == "data"]
    if name.endswith(".py"):
        text = subprocess.run([sys.executable, name, "--help"], capture_output=True, text=True, cwd=REPO).stdout
    else:
        text = run_main(name, *sub, "--help").stdout
    return set(re.findall(r"--\w+", text))


def paths(words: list[str]) -> list[str]:
    """The path-like words of a command (comma lists split), its program and tool left out."""
    found = []
    for word in args_of(words):
        for part in word.split(","):
            if not part.startswith("-") and ("/" in part or re.fullmatch(r"[\w.-]+\.[A-Za-z]\w{1,6}", part)):
                found.append(part.rstrip("/"))
    return found


def tracked(path: str) -> bool:
    """In a fresh clone: tracked by git (or present, without a .git folder)."""
    if not (REPO / ".git").exists():
        return bool(list(REPO.glob(path)))
    listed = subprocess.run(["git", "ls-files", "--", path], capture_output=True, text=True, cwd=REPO).stdout
    return bool(listed.strip())


def explained(name: str) -> bool:
    """A CAPITALS placeholder the README explains: in backticks in the prose, or in a # comment of a block."""
    prose = FENCE.sub("", README)
    comments = " ".join(line.split("#", 1)[1] for lang, body in BLOCKS if lang == "sh"
                        for line in body.splitlines() if "#" in line)
    return bool(re.search(rf"`{re.escape(name)}", prose)) or bool(re.search(rf"(?<![\w/]){re.escape(name)}", comments))


@pytest.fixture(scope="module")
def written() -> dict:
    """{command: paths it writes}, over every README command that is dry-run."""
    found = {}
    for w in RUN:
        if w[1] == "-m" and tool(w) not in RUN_FOR_REAL:
            with contextlib.suppress(pytest.fail.Exception):  # test_command_parses names the one that fails
                found[shlex.join(w)] = outputs(tool(w), dry_run(tool(w), args_of(w)))
    return found


def test_readme_has_commands_and_stays_short():
    assert len(README.splitlines()) <= 300, "README.md over 300 lines"
    assert len(RUN) >= 8 and {"demo", "test"} <= set(MAKE_TARGETS), (RUN, MAKE_TARGETS)


def test_no_command_hides_outside_sh_blocks():
    for lang, body in BLOCKS:
        if lang != "sh":
            lines = [line for line in body.splitlines() if re.match(r"\s*(python|make|pip|\w+=\S+ python) ", line)]
            assert not lines, f"a command in a ```{lang} block (label it sh so it is checked): {lines}"


@pytest.mark.parametrize("words", [w for w in RUN if w[1] == "-m" and tool(w) not in RUN_FOR_REAL], ids=shlex.join)
def test_command_parses(words, written):
    """Dry run (see the module docstring), and every path it names is accounted for."""
    ns = dry_run(tool(words), args_of(words))
    mine = outputs(tool(words), ns)
    others = {p for ps in written.values() for p in ps}
    for path in paths(words):
        first = path.split("/")[0]
        if path in mine or any(path == o or path.startswith(o + "/") for o in others) or tracked(path):
            continue
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*(\.\w+)?", first):
            pytest.fail(f"README: {shlex.join(words)}\n  {path}: not in a fresh clone, not written by a README "
                        "command, and not a CAPITALS placeholder")
        if not explained(first):
            pytest.fail(f"README: placeholder {first} is explained nowhere (prose or a # comment)")


def test_tf_config_example_is_json():
    for lang, body in BLOCKS:
        for value in re.findall(r"TF_CONFIG='([^']*)'", body):
            assert set(json.loads(value)) == {"cluster", "task"}


@pytest.mark.parametrize("words", RUN + INLINE, ids=shlex.join)
def test_every_flag_is_the_tools(words):
    if words[1] != "-m":
        assert tracked(words[1]), f"{words[1]} is not in the repository"
    flags = {w.split("=")[0] for w in args_of(words) if w.startswith("--")}
    unknown = flags - help_flags(words)
    assert not unknown, f"README: {shlex.join(words)}\n  not in its --help: {sorted(unknown)}"


@pytest.mark.parametrize("target", MAKE_TARGETS)
def test_make_target_exists(target):
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "-n", target], capture_output=True, text=True, cwd=REPO)
    assert dry.returncode == 0 and dry.stdout.strip(), dry.stderr


def test_python_example_names_what_the_package_has():
    for lang, body in BLOCKS:
        if lang == "python":
            for node in ast.walk(ast.parse(body)):
                if isinstance(node, ast.ImportFrom):
                    mod = importlib.import_module(node.module)
                    assert all(hasattr(mod, a.name) for a in node.names), ast.unparse(node)


def test_model_cost_is_the_readmes():
    """``python -m mfn_tf2.model --preset paper`` runs and prints the multiply-adds the README states."""
    words = next(w for w in INLINE + RUN if tool(w) == "model")
    proc = run_cli("model", *args_of(words))
    assert proc.returncode == 0, proc.stderr
    macs = re.search(r"multiply-adds: [\d,]+ \(([\d.]+) M per image\)", proc.stdout)
    claim = re.search(r"([\d.]+) M\s+multiply-adds at 112 px", README)
    assert macs and claim and round(float(macs.group(1))) == round(float(claim.group(1))), proc.stdout


def test_data_pack_runs(tmp_path):
    """``python -m mfn_tf2.data pack FACES/ SHARDS/ --shards N`` as written, FACES/ a few bundled faces."""
    words = next(w for w in INLINE + RUN if tool(w) == "data")
    faces = make_face_tree(tmp_path / "faces", n_ids=11, n_imgs=6)  # 66 images: the README's 64 shards
    fill = {"FACES/": str(faces), "SHARDS/": str(tmp_path / "shards")}
    proc = run_main("data", *[fill.get(a, a) for a in args_of(words)])
    assert proc.returncode == 0, proc.stderr
    assert "packed 66 images of 11 identities into 64 shards" in proc.stdout, proc.stdout
