"""Loaded at interpreter start when this folder is on PYTHONPATH: makes the training stack
unimportable, as on a board that has only a runtime."""

import os
import sys

# BLOCK_EXTRA (comma-separated) blocks more packages, e.g. yaml for a packaged solution.
BLOCKED = ("paddle", "paddleseg", "paddleslim", "paddleseg_ext") + tuple(
    filter(None, os.environ.get("BLOCK_EXTRA", "").split(","))
)


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed on this device (blocked)")
        return None


sys.meta_path.insert(0, _Blocker())
