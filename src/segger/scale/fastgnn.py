"""Moved to :mod:`segger.prediction.fastgnn` (the fast inference path belongs to prediction; this
location made ``prediction`` and ``scale`` import each other). ``segger.scale.fastgnn`` is that
same module object, so old imports and patches keep working."""

import sys

from segger.prediction import fastgnn as _fastgnn

sys.modules[__name__] = _fastgnn
