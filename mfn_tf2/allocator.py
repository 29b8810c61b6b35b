"""tcmalloc for the command-line tools: faster TensorFlow steps on CPUs.

A TensorFlow training step allocates and frees hundreds of megabytes of
activations. With the C library's malloc much of that goes back to the kernel
and is faulted in again on the next step; tcmalloc keeps it (``python -m
mfn_tf2.benchmark`` names the malloc in use beside its figures).

Every ``python -m mfn_tf2.<tool>`` re-executes itself once, before TensorFlow
is imported, with ``LD_PRELOAD`` set to tcmalloc when the library is installed
(Debian/Ubuntu: ``apt-get install libtcmalloc-minimal4``) and ``LD_PRELOAD``
does not name it yet. ``MFN_TF2_TCMALLOC=0`` turns this off; a program that
imports mfn_tf2 as a library is never re-executed.

The header of ``python -m mfn_tf2.benchmark`` says which malloc it ran with.
"""
from __future__ import annotations

import os
import sys
import sysconfig

LIBRARY = "libtcmalloc_minimal.so.4"
# Folders searched for LIBRARY (the multiarch one is Debian's).
_FOLDERS = (f"/usr/lib/{sysconfig.get_config_var('MULTIARCH') or ''}", "/usr/lib64", "/usr/lib",
            "/usr/local/lib")
# Environment variable that turns the re-exec off ("0", "false", "no", "off").
SWITCH = "MFN_TF2_TCMALLOC"


def find_tcmalloc() -> str | None:
    """The path of tcmalloc (minimal) on this machine, or None."""
    paths = (os.path.join(folder, LIBRARY) for folder in _FOLDERS)
    return next((path for path in paths if os.path.isfile(path)), None)


def preload_env(environ: dict) -> dict | None:
    """The environment to re-execute with, or None when nothing is to change.

    Args:
        environ: the current environment (``os.environ``).

    Returns:
        A copy of ``environ`` with tcmalloc prepended to ``LD_PRELOAD`` (and its
        "large alloc" reports off), or None: turned off by ``MFN_TF2_TCMALLOC``,
        already preloaded, or tcmalloc not installed.

    Example:
        >>> preload_env({"MFN_TF2_TCMALLOC": "0"}) is None
        True
    """
    preload = environ.get("LD_PRELOAD", "")
    if environ.get(SWITCH, "1").lower() in ("0", "false", "no", "off") or "tcmalloc" in preload:
        return None
    path = find_tcmalloc()
    if path is None:
        return None
    # tcmalloc prints a line for every allocation above 1 GB unless told otherwise.
    return {**environ, "LD_PRELOAD": f"{path} {preload}".strip(),
            "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": environ.get("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD",
                                                                 str(2**40))}


def reexec_with_tcmalloc() -> None:
    """Replaces this process by itself with tcmalloc preloaded (see ``preload_env``).

    Call only from a command-line entry point before TensorFlow is imported:
    the process is restarted from ``sys.orig_argv``.
    """
    env = preload_env(dict(os.environ))
    if env is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def malloc_in_use() -> str:
    """Which malloc this process runs with: "tcmalloc (its path)" or "the C library's"."""
    with open("/proc/self/maps") as maps:
        path = next((line.split()[-1] for line in maps if "tcmalloc" in line), None)
    return f"tcmalloc ({path})" if path else "the C library's"

