"""A directory written in full or not at all: fill a sibling folder, then rename it in place.

``StagedDirectory(final)`` hands out ``FINAL.tmp-<pid>``; ``commit()`` swaps it in with
renames only, so a process killed at any point leaves either the previous ``final``, the
new one, or (between the two renames) none, never a mix:

1. an existing ``final`` is renamed to ``FINAL.old-<pid>``;
2. ``FINAL.tmp-<pid>`` is renamed to ``final``;
3. ``FINAL.old-<pid>`` is renamed to ``FINAL.tmp-<pid>`` and removed.

Leftovers of a killed process (its pid no longer runs) are dealt with when the next stage
of the same ``final`` opens, or by :func:`clean_stale` for a whole folder: a ``.tmp-``
folder is removed; an ``.old-`` folder is the previous complete directory and is put back
when ``final`` is missing (a kill between steps 1 and 2), else removed.
"""

from __future__ import annotations

import os
import shutil
from types import TracebackType

from paddleseg.utils import logger

_TMP = ".tmp-"
_OLD = ".old-"


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _stale_entries(parent: str, base: str | None = None) -> list[tuple[str, str, str]]:
    """``(kind, path, final)`` of the ``.tmp-``/``.old-`` folders in ``parent`` left by dead
    pids; only those of ``parent/base`` when ``base`` is given."""
    stale = []
    for name in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
        for kind in (_TMP, _OLD):
            head, sep, pid = name.rpartition(kind)
            if sep and head and pid.isdigit() and base in (None, head):
                if not _pid_running(int(pid)):
                    stale.append((kind, os.path.join(parent, name), os.path.join(parent, head)))
    return stale


def is_staging(name: str) -> bool:
    """Whether a folder name is that of a stage or of a directory being replaced or removed."""
    return any(kind in name for kind in (_TMP, _OLD))


def clean_stale(parent: str, base: str | None = None) -> list[str]:
    """Restores or removes what killed processes left in ``parent`` (logged); returns the paths.

    A ``.tmp-`` folder is removed; an ``.old-`` folder is the previous complete directory
    and is put back when its directory is missing (a kill between the two renames of a
    commit), else removed. ``base`` limits this to the folders of ``parent/base``.
    """
    found = _stale_entries(parent, base)
    for kind, path, final in found:
        if kind == _OLD and not os.path.exists(final):
            os.replace(path, final)
            logger.warning(f"Restored {final} from {path}, left by a killed process")
        else:
            shutil.rmtree(path, ignore_errors=True)
            logger.warning(f"Removed {path}, left by a killed process")
    return [path for _, path, _ in found]


def remove_dir(path: str) -> None:
    """Deletes a directory, first renaming it to a stage name: a kill while deleting leaves
    a folder that is never taken for the complete directory and is cleaned later."""
    doomed = f"{path}{_TMP}{os.getpid()}"
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(path, doomed)
    shutil.rmtree(doomed)


class StagedDirectory:
    """Context manager writing a directory atomically (see the module docstring).

    Example::

        with StagedDirectory("out/export") as stage:
            write_files(stage.path)
            stage.commit()  # without it (or on an exception) the stage is removed

    Args:
        final: The directory to write; an existing one is replaced as a whole on commit. A
            symbolic link is followed (its target is replaced, the link stays).
    """

    def __init__(self, final: str) -> None:
        self.final = os.path.realpath(final)
        self.path = f"{self.final}{_TMP}{os.getpid()}"
        self._old = f"{self.final}{_OLD}{os.getpid()}"
        self.committed = False

    def __enter__(self) -> StagedDirectory:
        clean_stale(*os.path.split(self.final))
        shutil.rmtree(self.path, ignore_errors=True)  # a leftover of a recycled pid
        os.makedirs(self.path)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.committed:
            shutil.rmtree(self.path, ignore_errors=True)

    def commit(self) -> None:
        """Puts the stage in place of ``final`` (replacing an existing one)."""
        replaced = os.path.isdir(self.final)
        if replaced:
            os.replace(self.final, self._old)
        os.replace(self.path, self.final)
        self.committed = True
        if replaced:
            # Renamed before the removal, so a kill while removing leaves only a .tmp- folder.
            os.replace(self._old, self.path)
            shutil.rmtree(self.path)
