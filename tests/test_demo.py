"""`mailbridge demo`, the README's first command (issue 17): its servers come with the
`demo` extra, and without them the command says how to get them in one line."""

from __future__ import annotations

import subprocess
import sys

# The command line in a process where the demo's servers cannot be found, as when the
# `demo` extra was not installed (pip installs them nowhere else).
_WITHOUT_DEMO_EXTRA = """
import sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("pymap", "aiosmtpd"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
from mailbridge.cli import main
main(sys.argv[1:])
"""


def test_demo_without_its_extra_names_the_install_command(tmp_path):
    result = subprocess.run([sys.executable, "-c", _WITHOUT_DEMO_EXTRA, "demo"], capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "pip install 'crossec-mailbridge[demo]'" in line
    assert "pymap" in line and "aiosmtpd" in line
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


def test_demo_takes_in_the_sample_mail_and_acknowledges_it(tmp_path):
    result = subprocess.run([sys.executable, "-c", "import sys; from mailbridge.cli import main; main(sys.argv[1:])",
                             "demo"], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "$ mailbridge tickets list" in result.stdout
    assert "CRX-000001" in result.stdout
    assert "The first acknowledgement, as the customer reads it:" in result.stdout
