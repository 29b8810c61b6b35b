"""The project speaks of itself only: no run logs in what a user reads.

README, docs, ``--help`` texts, comments, tests and generated reports may not
carry a session's bookkeeping: "stop 19", "issue 8", a run's clock times
("13:39-13:48"), a commit hash used as a baseline, or a path outside the
repository ("../shared/...", a home folder). Pure text scan: nothing is imported.
"""
import re
from pathlib import Path

import pytest

from conftest import REPO

# What a user reads or runs: prose, code (comments, docstrings, --help epilogs) and the generated reports
# that are committed (docs/, export/, android_demo_assets/).
TEXT_FILES = sorted(
    [p for p in REPO.glob("*.md")]
    + [p for d in ("docs", "data", "export", "android_demo_assets") for p in (REPO / d).glob("**/*")
       if p.suffix in (".md", ".json", ".txt") and p.name != "pairs_heldout.txt"]
    + [p for d in ("mfn_tf2", "tests", "benchmarks") for p in (REPO / d).glob("**/*")
       if p.suffix in (".py", ".sh", ".md")]
    + [REPO / "Makefile", REPO / "setup.py", REPO / ".ci" / "run"])

# pattern -> what it is. Matched case-insensitively, line by line.
BANNED = {
    r"\bstop \d+\b": "a session's stop number",
    r"\bissues? #?\d+\b": "an issue number",
    r"\b(?:[01]?\d|2[0-3]):[0-5]\d\s*-\s*(?:[01]?\d|2[0-3]):[0-5]\d\b": "a run's clock times",
    r"\b(?:commit|checkout of|baseline|before) (?:of )?[0-9a-f]{7,40}\b": "a commit hash as a baseline",
    r"\.\./shared\b|/work/|/home/\w|/root/|/Users/\w": "a path outside the repository",
}

# The one place a path outside the repository is code, not text: where the tests look for a full LFW copy
# (overridden by MFN_LFW_ROOT; tests that need it skip without it).
ALLOWED = {("tests/conftest.py", 'SHARED_LFW = Path(os.environ.get("MFN_LFW_ROOT", REPO.parent / "shared" / "data" / "lfw"))'),
           ("tests/test_project_words.py", None),
           # the assets' own leak check, fed the paths it must find
           ("tests/test_android_assets.py", "for text in ('\"measured_on\": \"/work/main/data\"', \"pairs /tmp/x.txt\", \"C:\\\\Users\\\\me\", \"/home/a/b\","),
           ("tests/test_android_assets.py", '"/root/lfw", f"built on {socket.gethostname()}"):')}


def offending_lines(path: Path) -> list[str]:
    """``file:line: what`` for every banned phrase of one text file."""
    rel = path.relative_to(REPO).as_posix()
    if (rel, None) in ALLOWED:
        return []
    found = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if (rel, line.strip()) in ALLOWED:
            continue
        for pattern, what in BANNED.items():
            hit = re.search(pattern, line, re.IGNORECASE)
            if hit:
                found.append(f"{rel}:{number}: {what}: {hit.group(0)!r}")
    return found


def test_the_scan_finds_what_it_bans(tmp_path):
    sample = REPO / "tests" / "test_project_words.py"
    assert sample in TEXT_FILES
    probe = REPO / "docs" / ".probe_project_words.md"
    probe.write_text("same run (13:39-13:48, stop 19), baseline 029f0edd\nfrom ../shared/data/lfw (issue 8)\n")
    try:
        hits = offending_lines(probe)
    finally:
        probe.unlink()
    assert [h.split(": ")[1] for h in hits] == ["a session's stop number", "a run's clock times",
                                                "a commit hash as a baseline", "an issue number",
                                                "a path outside the repository"]


@pytest.mark.parametrize("path", [p for p in TEXT_FILES if p.exists()], ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_run_log_words(path):
    hits = offending_lines(path)
    assert not hits, "run-log words in a file a user reads:\n" + "\n".join(hits)


def test_readme_sections_named_elsewhere_exist():
    """A comment or doc that sends the reader to README "X" finds a heading X there."""
    headings = {line.lstrip("#").strip() for line in (REPO / "README.md").read_text().splitlines()
                if line.startswith("#")}
    missing = [f"{path.relative_to(REPO)}: README \"{name}\""
               for path in TEXT_FILES if path.exists() and path.name != "test_project_words.py"
               for name in re.findall(r'README[\'’]?s? "([^"\n]+)"', path.read_text(errors="replace"))
               if name not in headings]
    assert not missing, "sections the README no longer has:\n" + "\n".join(missing)
