"""paddleseg-ext: low-power semantic segmentation components for PaddleSeg.

Importing this package registers our models, datasets, losses and transforms in PaddleSeg's
component managers. No stock PaddleSeg name is reused (PaddleSeg silently replaces a
duplicate), so stock configs keep their meaning.
"""

import warnings

# Paddle warns on every import that ccache (used only to compile custom C++ operators) is
# missing; our tools compile nothing, and the warning buried their one-line errors.
warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)

from . import datasets, losses, models  # noqa: E402, F401

__version__ = "0.1.0"
