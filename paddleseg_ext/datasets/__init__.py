"""Datasets registered in PaddleSeg's manager: ``LPCVC2023`` and ``SyntheticShapes``."""

from . import lpcvc, shapes  # noqa: F401
from .lpcvc import LPCVC2023
from .shapes import SyntheticShapes

__all__ = ["LPCVC2023", "SyntheticShapes"]
