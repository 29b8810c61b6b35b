"""The one place that picks Keras 2 (tf-keras) before TensorFlow is imported.

tensorflow-model-optimization only works with Keras 2, and TensorFlow 2.16+
defaults to Keras 3. Every module of the package imports ``tf`` and ``keras``
from here, never ``tensorflow`` or ``keras`` directly, so the choice is made
once and can never be mixed.

TensorFlow's start-up lines. ``TF_CPP_MIN_LOG_LEVEL`` (2 unless set: info and
warnings hidden) rules TensorFlow's logging once it is set up, but two of its
shared objects log while they load, before that, each through its own copy of
absl: "All log messages before absl::InitializeLog() ...", "oneDNN custom
operations are on ..." and, without CUDA, "Could not find cuda drivers ...",
twice (once per object, in one process); the first device query then logs
"failed call to cuInit" as an error. No setting reaches them, so TensorFlow is
loaded and its devices listed with file descriptor 2 through a small filter
process that applies the level to those lines (the cuInit error is dropped
only after the no-driver line) and passes every other line on as it comes: a
crash while TensorFlow loads still shows its message, since the filter, not
this process, holds the lines. ``TF_CPP_MIN_LOG_LEVEL=0`` shows everything.

Example:
    >>> from mfn_tf2.backend import tf, keras
    >>> keras.__version__.startswith("2.")
    True
"""
import contextlib
import os
import subprocess
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The filter process: stdin is this process's stderr while TensorFlow loads; argv[1] the log level.
# An absl line starts "I0101 12:00:00.000000  1234 file.cc:31] " (severity I, W, E or F; before
# absl is set up the time reads "00:00:<seconds since 1970>"). Ctrl-C is for the process it serves:
# the filter ends when its input does.
_FILTER = r"""
import re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
level, no_driver = int(sys.argv[1]), False
absl = re.compile(rb"([IWEF])\d{4} [\d:.]+ +\d+ \S+:\d+\] ")
for line in sys.stdin.buffer:
    head = absl.match(line)
    no_driver = no_driver or b"Could not find cuda drivers" in line
    if not (line.startswith(b"WARNING: All log messages before absl::InitializeLog()")
            or head and "IWEF".index(head.group(1).decode()) < level
            or head and no_driver and b"failed call to cuInit" in line):
        sys.stderr.buffer.write(line)
        sys.stderr.buffer.flush()
"""


def _log_level() -> int:
    """TF_CPP_MIN_LOG_LEVEL as TensorFlow reads it: 0 info, 1 warnings, 2 errors, 3 fatal only."""
    try:
        return int(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    except ValueError:
        return 0


def _load():
    """Imports TensorFlow and tf-keras and lists the GPUs (the cuInit attempt)."""
    import tensorflow  # lazy: loaded here, with file descriptor 2 through _FILTER (module doc)
    import tf_keras  # lazy: loaded with TensorFlow, through the same filter
    tensorflow.config.list_physical_devices("GPU")
    return tensorflow, tf_keras


def _load_filtered():
    """``_load()`` with file descriptor 2 through ``_FILTER`` (plainly when the level shows all,
    or when there is no stderr to filter or no Python to filter it with)."""
    if _log_level() < 1 or not sys.executable or sys.stderr is None:
        return _load()
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # file descriptor 2 closed
        return _load()
    try:
        child = subprocess.Popen([sys.executable, "-I", "-S", "-c", _FILTER, str(_log_level())],
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=saved)
    except OSError:
        os.close(saved)
        return _load()
    os.dup2(child.stdin.fileno(), 2)
    try:
        return _load()
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        child.stdin.close()  # the filter reads to the end, then exits
        child.wait()


tf, keras = _load_filtered()

if os.environ["TF_USE_LEGACY_KERAS"] != "1":
    raise RuntimeError(
        "mfn_tf2 needs Keras 2: unset TF_USE_LEGACY_KERAS or set it to 1 "
        "(tensorflow-model-optimization does not support Keras 3)")



@contextlib.contextmanager
def without_warnings(*starts: str):
    """Drops TensorFlow's Python log lines that begin with one of ``starts`` inside the block.

    For Keras' advice meant for whoever writes the code, not for a user: the kit
    says once, here, which lines it knows to be harmless.

    Example:
        >>> logger = tf.get_logger()
        >>> line = logger.makeRecord("tensorflow", 30, "saving_utils.py", 1, "Compiled the loaded model, but ...",
        ...                          None, None)
        >>> with without_warnings("Compiled the loaded model"):
        ...     bool(logger.filter(line))   # dropped inside the block
        False
        >>> bool(logger.filter(line))
        True
    """
    def keep(record) -> bool:
        return not record.getMessage().startswith(starts)
    logger = tf.get_logger()
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


__all__ = ["tf", "keras", "without_warnings"]
