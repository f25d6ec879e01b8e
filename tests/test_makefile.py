"""The Makefile on a fresh machine: two `make run` at once must not race on .venv."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

from tests.conftest import ROOT

# A stand-in for python3: `-m venv DIR` makes DIR/bin/pip, a pip that fails when another pip
# of the same virtualenv is running (as two real pips in one venv die on each other's files).
FAKE_PYTHON = textwrap.dedent(
    """\
    #!/bin/sh
    [ "$1" = "-m" ] && [ "$2" = "venv" ] || exit 3
    mkdir -p "$3/bin"
    echo created >> "$3/created"
    cat > "$3/bin/pip" <<'PIP'
    #!/bin/sh
    here=$(dirname "$0")
    mkdir "$here/../busy" 2>/dev/null || { echo "pip: another pip is running" >&2; exit 1; }
    sleep 0.5
    rmdir "$here/../busy"
    PIP
    chmod +x "$3/bin/pip"
    """
)


def test_two_makes_at_once_build_one_virtualenv(tmp_path: Path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    python = tmp_path / "python3"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    make = ["make", "-s", "-C", str(tmp_path), f"PYTHON={python}", ".venv/.installed"]
    first = subprocess.Popen(make, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(make, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = [p.communicate(timeout=60) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, results
    assert (tmp_path / ".venv" / ".installed").is_file()
    # The second make waited for the first and found the virtualenv ready.
    assert (tmp_path / ".venv" / "created").read_text().splitlines() == ["created"]
