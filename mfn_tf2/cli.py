"""Command-line plumbing shared by every ``python -m mfn_tf2.<cli>``.

Flags map 1:1 onto the fields of the frozen configs in ``config.py``: the flag
``--batch_size`` sets ``DataConfig.batch_size``, its help text is the field's
line in the class docstring, its default the field's default. A config that
rejects a value (``__post_init__`` raising ValueError) becomes an argparse
error: one line, exit code 2.

Example:
    >>> import argparse
    >>> from mfn_tf2.config import DataConfig
    >>> p = argparse.ArgumentParser()
    >>> add_config_flags(p, DataConfig, skip=("train_directory",))
    >>> ns = p.parse_args(["--batch_size", "64", "--shuffle", "false"])
    >>> config_from_args(DataConfig, ns, train_directory="faces").batch_size
    64
    >>> p.parse_args(["--shuffle"]).shuffle      # a bare boolean flag means true
    True
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import typing

from mfn_tf2.config import MODEL_PRESETS, RENAMED

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# Old preset / recipe names already noted on stderr in this process.
_NOTED: set[str] = set()


def str2bool(text: str) -> bool:
    """Parses true/false, yes/no, on/off, 1/0 (any case)."""
    low = text.lower()
    if low in _TRUE | _FALSE:
        return low in _TRUE
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def number_list(kind):
    """An argparse ``type`` for comma-separated numbers: "1,2,4" -> (1, 2, 4)."""
    def parse(text: str):
        try:
            return tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return parse


def _str_list(text: str):
    return tuple(v.strip() for v in text.split(",") if v.strip())


# Field annotation (as written in config.py) -> argparse ``type``.
_PARSERS = {
    "int": int, "float": float, "str": str, "bool": str2bool, "bool | None": str2bool,
    "str | None": str, "int | None": int, "float | None": float,
    "tuple[float, ...]": number_list(float),
    "tuple[int, int, int, int] | None": number_list(int),
    "tuple[str, ...]": _str_list,
}


def named(table: dict, flag: str):
    """The argparse ``type`` of a flag naming an entry of ``table`` (``--preset``, ``--recipe``).

    An old name of ``config.RENAMED`` is taken as its new one, with a one-line
    note on stderr (once per process).

    Example:
        >>> named({"keras_original": 1, "paper": 2}, "--preset")("paper")
        'paper'
    """
    def parse(value: str) -> str:
        new = RENAMED.get(value)
        if new in table:
            if value not in _NOTED:
                _NOTED.add(value)
                print(f"note: {flag} {value} is now called {new}", file=sys.stderr)
            return new
        return value
    return parse


def pre_parse(argv, **flags) -> argparse.Namespace:
    """Reads the few flags whose values set other flags' defaults (``--preset``, ``--recipe``).

    Args:
        argv: the command line (None: sys.argv[1:]).
        flags: {name: (choices, default)}.

    Returns:
        A namespace with just those flags; the rest of ``argv`` is ignored here.

    Example:
        >>> pre_parse(["x", "--preset", "paper"], preset=(["keras_original", "paper"], "keras_original")).preset
        'paper'
    """
    first = argparse.ArgumentParser(add_help=False)
    for name, (choices, default) in flags.items():
        first.add_argument(f"--{name}", choices=sorted(choices), default=default, type=named(choices, f"--{name}"))
    return first.parse_known_args(argv)[0]


def shell_parser(name: str, doc: str, **kwargs) -> argparse.ArgumentParser:
    """The parser of ``python -m mfn_tf2.<name>``: the first line of ``doc`` describes it, the rest
    (its examples, kept as written) closes its ``--help``.

    Args:
        name: the module's name (``"evaluate"``).
        doc: the module's docstring: a summary line, a blank line, then the body.
        kwargs: more ``argparse.ArgumentParser`` arguments (``usage=...``).

    Returns:
        The parser, with no flags yet.

    Example:
        >>> p = shell_parser("x", "Does x.\\n\\n    python -m mfn_tf2.x IN")
        >>> p.prog, p.description, p.epilog
        ('python -m mfn_tf2.x', 'Does x.', '    python -m mfn_tf2.x IN')
    """
    return argparse.ArgumentParser(prog=f"python -m mfn_tf2.{name}", description=doc.split("\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=doc.split("\n", 2)[2], **kwargs)


# ``pre_parse``'s entry for --preset: not given (None), the model flags keep the defaults they have
# without one (keras_original's, or a recipe's model).
PRESET = (MODEL_PRESETS, None)


def add_preset_flag(parser, without: str = "keras_original") -> None:
    """Adds ``--preset`` (a name of ``config.MODEL_PRESETS``; old names taken with a note).

    Args:
        parser: an argparse parser or argument group.
        without: what the model flags' defaults are when no preset is named (for ``--help``).
    """
    parser.add_argument("--preset", choices=sorted(MODEL_PRESETS), default=None,
                        type=named(MODEL_PRESETS, "--preset"),
                        help="model configuration to start from (keras_original: the original Keras "
                             "implementation's defaults; paper: the paper's network; mbf: insightface's); "
                             f"model flags override it (default: {without})")


def preset_defaults(preset: str | None, fallback=None):
    """The ModelConfig whose values the model flags default to.

    Args:
        preset: the ``--preset`` given, or None.
        fallback: the ModelConfig without a preset (a recipe's model); None: keras_original.

    Returns:
        ``MODEL_PRESETS[preset]``, else ``fallback``, else ``MODEL_PRESETS["keras_original"]``.

    Example:
        >>> preset_defaults("paper").embedding_dim, preset_defaults(None).embedding_dim
        (128, 256)
    """
    if preset:
        return MODEL_PRESETS[preset]
    return fallback or MODEL_PRESETS["keras_original"]


def field_help(cls) -> dict[str, str]:
    """Maps each field of a config class to its line in the ``Args:`` docstring."""
    doc = cls.__doc__ or ""
    helps, name = {}, None
    for line in doc.split("Args:", 1)[-1].splitlines():
        m = re.match(r"\s{8}(\w+): (.*)", line)
        if m:
            name = m.group(1)
            helps[name] = m.group(2).strip()
        elif name and line.strip():
            helps[name] += " " + line.strip()
    return helps


def field_parser(cls, name: str):
    """The argparse ``type`` of a config field (for a second flag name of it)."""
    return _PARSERS[str(next(f for f in dataclasses.fields(cls) if f.name == name).type)]


def add_config_flags(parser, cls, *, skip=(), positional=(), defaults=None):
    """Adds one flag per field of ``cls`` (positional for names in ``positional``).

    Args:
        parser: an argparse parser or argument group.
        cls: a frozen config dataclass.
        skip: field names that get no flag.
        positional: field names taken as positional arguments.
        defaults: a config instance whose values replace the class defaults.

    A field whose flag already exists (``--seed`` in several configs) is not
    added again: the one flag then sets that field in every config.
    """
    helps = field_help(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f"--{f.name}" in parser._option_string_actions:
            continue
        kind = _PARSERS[str(f.type)]
        default = getattr(defaults, f.name) if defaults is not None else f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        text = f"{helps.get(f.name, '')} (default: {shown})"
        if f.name in positional:
            parser.add_argument(f.name, type=kind, help=helps.get(f.name, ""))
        elif kind is str2bool:  # a bare --shuffle means true, as in the original Keras implementation's scripts
            parser.add_argument(f"--{f.name}", type=kind, default=default, help=text,
                                metavar=f.name.upper(), nargs="?", const=True)
        else:
            parser.add_argument(f"--{f.name}", type=kind, default=default, help=text,
                                metavar=f.name.upper())


def config_from_args(cls, ns: argparse.Namespace, **overrides):
    """Builds ``cls`` from the parsed flags that name its fields, plus ``overrides``."""
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)}
    values.update(overrides)
    return cls(**values)


def build_configs(parser: argparse.ArgumentParser, ns: argparse.Namespace, classes: dict, **overrides):
    """Builds several configs at once; a rejected value is a one-line parser error.

    Args:
        parser: the parser, used to report errors (exit code 2).
        ns: parsed flags.
        classes: {key: config class}.
        overrides: {key: {field: value}} applied on top of the flags.

    Returns:
        {key: config instance}.
    """
    try:
        return {key: config_from_args(cls, ns, **overrides.get(key, {}))
                for key, cls in classes.items()}
    except (ValueError, TypeError) as err:
        parser.error(str(err))


def fail(message: str, code: int = 1) -> typing.NoReturn:
    """Prints ``error: message`` on stderr (one line) and exits with ``code``."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)
