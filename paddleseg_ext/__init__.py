"""paddleseg-ext: low-power semantic segmentation components for PaddleSeg.

Importing this package registers our models, datasets, losses and transforms in PaddleSeg's
component managers. No stock PaddleSeg name is reused (PaddleSeg silently replaces a
duplicate), so stock configs keep their meaning.
"""

import importlib
import importlib.util
import sys
import types
import warnings

# Paddle warns on every import that ccache (used only to compile custom C++ operators) is
# missing; our tools compile nothing, and the warning buried their one-line errors.
warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)


class _DeferredSklearnMetrics(types.ModuleType):
    """Stands for ``sklearn.metrics`` in PaddleSeg until first used.

    PaddleSeg imports it at start-up for one function (``auc_roc``) that our tools never call;
    loading scikit-learn costs every process about 0.1 GiB of memory and a second or more,
    twice over when training on two CPU ranks. The stand-ins are in ``sys.modules`` only
    while PaddleSeg is imported; the first attribute read imports the real module.
    """

    def __getattr__(self, name: str):
        return getattr(importlib.import_module("sklearn.metrics"), name)


_stand_ins: dict = {}
if "sklearn" not in sys.modules and importlib.util.find_spec("sklearn") is not None:
    _stand_ins["sklearn"] = types.ModuleType("sklearn")
    _stand_ins["sklearn"].metrics = _DeferredSklearnMetrics("sklearn.metrics")
    _stand_ins["sklearn.metrics"] = _stand_ins["sklearn"].metrics
    sys.modules.update(_stand_ins)
try:
    from . import datasets, losses, models  # noqa: E402, F401
finally:
    for _key, _module in _stand_ins.items():
        if sys.modules.get(_key) is _module:
            del sys.modules[_key]

__version__ = "0.1.0"
