"""Fixtures shared by the whole suite: a private data cache and tiny configs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import yaml
from helpers import TINY_CONFIG


def pytest_configure(config):
    # Generated datasets go to a throw-away cache, never the user's ~/.cache.
    os.environ.setdefault("PADDLESEG_EXT_CACHE", tempfile.mkdtemp(prefix="pse-test-cache-"))


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A 6-iteration TopFormer-tiny config on 8 synthetic 64x64 images."""
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(TINY_CONFIG))
    return path
