"""Loaded at interpreter start when this folder is on PYTHONPATH and ``EXPORT_HOLD_MARKER``
names a file: the process stops just before it would commit a staged directory
(``paddleseg_ext.atomic.StagedDirectory.commit``), creates that file and waits there to be
killed. A kill test can then aim anywhere before the commit without racing a fast machine."""

import importlib.abc
import importlib.util
import os
import sys
import time

MARKER = os.environ.get("EXPORT_HOLD_MARKER")
MODULE = "paddleseg_ext.atomic"


def _hold(self) -> None:
    with open(MARKER, "w") as f:
        f.write(self.path)
    while True:
        time.sleep(60)


class _HoldBeforeCommit(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != MODULE:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            module.StagedDirectory.commit = _hold

        spec.loader.exec_module = exec_module
        return spec


if MARKER:
    sys.meta_path.insert(0, _HoldBeforeCommit())
