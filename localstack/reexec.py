"""Re-run a script of this folder under localstack/.venv when the current Python lacks what it
needs, so `python3 localstack/seed.py` works whichever python3 a user types."""

from __future__ import annotations

import os
import sys


def use_venv_if_needed(module: str, script: str) -> None:
    """Exec `script` under localstack/.venv (made by install.sh) if `module` is not importable."""
    try:
        __import__(module)
    except ImportError:
        venv = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".venv")
        venv_python = os.path.join(venv, "bin", "python")
        # Compare prefixes, not executables: a venv's python is a symlink to the interpreter it
        # was made from, so both resolve to the same file.
        if os.path.exists(venv_python) and os.path.realpath(sys.prefix) != os.path.realpath(venv):
            os.execv(venv_python, [venv_python, os.path.abspath(script), *sys.argv[1:]])
