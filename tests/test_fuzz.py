"""Seeded, bounded fuzzing of what users feed the CLIs.

Random truncations and byte changes of a pairs file, a .tflite, a JPEG inside
a training folder and a checkpoint index (``checkpoint`` and ``ckpt-N.index``)
go through the real CLIs (one process, see tests/fuzz_cli.py). Each run must end
in one ``error:`` line with exit 1 or 2, or succeed; a corrupted JPEG that
no longer decodes must be skipped and counted. Never a traceback.
"""
import json
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # 30 CLI runs in one process

SEED, COUNT = 14, 6


def test_corrupted_inputs_end_in_one_error_line_or_a_counted_skip(tmp_path):
    out = tmp_path / "fuzz.json"
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "fuzz_cli.py"), tmp_path / "work", str(SEED),
                           str(COUNT), out], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert len(results) == 5 * COUNT
    bad = []
    for r in results:
        last = (r["stderr"].strip().splitlines() or [""])[-1]
        if r["traceback"]:
            bad.append(f"{r['kind']} {r['corruption']}: traceback\n{r['traceback']}")
        elif r["code"] != 0 and not (r["code"] in (1, 2) and last.startswith(("error: ", "python -m mfn_tf2."))
                                     and "Traceback" not in r["stderr"]):
            bad.append(f"{r['kind']} {r['corruption']}: exit {r['code']}, last line {last!r}")
        elif r["kind"] == "jpeg" and r["code"] == 0 and not r["still_decodes"] \
                and "1 files skipped" not in r["stdout"]:
            bad.append(f"jpeg {r['corruption']}: broken but not skipped: {r['stdout']!r}")
    assert not bad, "\n\n".join(bad)
    # The corruptions really bit: some runs were refused, some JPEGs skipped.
    assert any(r["code"] == 1 for r in results if r["kind"] in ("pairs", "tflite", "checkpoint"))
    assert any("1 files skipped" in r["stdout"] for r in results if r["kind"] == "jpeg")
