"""Knowledge distillation: CWD, CGD, P&KL, NFD and KD from a ``distill:`` config section.

Imported by the training loop only when a config has that section (it pulls in PaddleSlim).
"""

from .distiller import Distiller, DistillSpec, TermSpec, build_teacher, parse_distill
from .losses import CGD, CWD, KD, NFD, PKL

__all__ = [
    "CGD",
    "CWD",
    "KD",
    "NFD",
    "PKL",
    "DistillSpec",
    "Distiller",
    "TermSpec",
    "build_teacher",
    "parse_distill",
]
