"""Command-line plumbing of the runtime's scripts."""

from __future__ import annotations

import sys
from typing import Callable

# Bad input (a missing file, a malformed deploy.yaml, a backend that is not installed).
INPUT_ERRORS = (FileNotFoundError, ValueError, ImportError)


def run(main: Callable[[], object]) -> None:
    """Runs a script's ``main``; input errors print one line and exit with status 2."""
    try:
        main()
    except INPUT_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
