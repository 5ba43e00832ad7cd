"""paddleseg-ext: low-power semantic segmentation components for PaddleSeg.

Importing this package registers our models, datasets, losses and transforms in PaddleSeg's
component managers. No stock PaddleSeg name is reused (PaddleSeg silently replaces a
duplicate), so stock configs keep their meaning.
"""

from . import datasets, losses, models  # noqa: F401

__version__ = "0.1.0"
