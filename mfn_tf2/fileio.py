"""Writing results so that nothing already written is lost.

Every file the kit produces goes through here: written under a temporary name
in the same folder, then renamed over the final name (``os.replace`` is atomic
on POSIX), so an interrupted run leaves either the old file or the new one,
never half of one. Whole folders (a SavedModel) are built beside their final
name and swapped in. ``OutputLock`` stops two runs writing one folder.

Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> write_text(os.path.join(d, "a.txt"), "hello")
    >>> open(os.path.join(d, "a.txt")).read()
    'hello'
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile


# Megabytes, as every size the kit prints or writes counts them: 10**6 bytes (not 2**20).
MB = 10**6


def size_mb(path: str) -> float:
    """The size of a file, or of every file under a folder (a SavedModel), in MB (10**6 bytes).

    Args:
        path: a file or a folder.

    Returns:
        The total size in megabytes.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> write_bytes(os.path.join(d, "a.bin"), bytes(1500000))
        >>> size_mb(os.path.join(d, "a.bin")), size_mb(d)
        (1.5, 1.5)
    """
    if not os.path.isdir(path):
        return os.path.getsize(path) / MB
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs) / MB


class OutputError(OSError):
    """An output folder that cannot be used (unwritable, full, locked)."""

    def __str__(self):
        return self.strerror


def write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Writes UTF-8 ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str, obj) -> None:
    """Writes ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str):
    """Yields a temporary folder beside ``path``; on success it replaces ``path``.

    Example:
        >>> root = tempfile.mkdtemp()
        >>> with atomic_directory(os.path.join(root, "saved")) as tmp:
        ...     write_text(os.path.join(tmp, "a.txt"), "new")
        >>> os.listdir(root), os.listdir(os.path.join(root, "saved"))
        (['saved'], ['a.txt'])
        >>> shutil.rmtree(root)
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-" + os.path.basename(path))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # A fixed name: a run killed between the two renames leaves the old folder
    # where ``sweep`` (run by the next OutputLock) puts it back.
    old = os.path.join(parent, ".old-" + os.path.basename(path))
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(path):
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def check_writable(folder: str, min_free_mb: float = 50.0) -> None:
    """Fails early when ``folder`` cannot be created, written, or its disk is full.

    Raises:
        OutputError: with the folder and the reason.
    """
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, ".write-probe")
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.remove(probe)
    except OSError as err:
        raise OutputError(errno.EACCES, f"{folder}: cannot write here ({err.strerror}); "
                          "choose another output folder") from None
    free_mb = shutil.disk_usage(folder).free / MB
    if free_mb < min_free_mb:
        raise OutputError(errno.ENOSPC, f"{folder}: only {free_mb:.0f} MB free on its disk "
                          f"(need at least {min_free_mb:.0f} MB)")


def sweep(folder: str) -> None:
    """Cleans what a killed run left in ``folder``: temporary files and folders go,
    and a folder caught between the two renames of ``atomic_directory`` comes back."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.startswith(".old-") and not os.path.exists(os.path.join(folder, name[5:])):
            os.replace(path, os.path.join(folder, name[5:]))
        elif name.startswith((".tmp-", ".old-")):
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)


class OutputLock:
    """An exclusive lock on an output folder, held while a run writes into it.

    A second run on the same folder fails at once with a clear message instead
    of interleaving files. The lock is released when the process ends, even on
    SIGKILL (it is an ``flock`` on ``<folder>/.lock``).

    Example:
        >>> import tempfile
        >>> with OutputLock(tempfile.mkdtemp()):
        ...     pass
    """

    def __init__(self, folder: str):
        self.folder = folder
        self._fd = None

    def __enter__(self):
        check_writable(self.folder)
        self._fd = os.open(os.path.join(self.folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise OutputError(errno.EBUSY, f"{self.folder}: another run is writing here "
                              "(wait for it to finish or choose another folder)") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())
        sweep(self.folder)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        return False
