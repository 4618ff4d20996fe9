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
        venv_python = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".venv", "bin", "python")
        if os.path.exists(venv_python) and os.path.realpath(sys.executable) != os.path.realpath(venv_python):
            os.execv(venv_python, [venv_python, os.path.abspath(script), *sys.argv[1:]])
