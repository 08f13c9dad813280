"""Moved to :mod:`segger.models.fused` (the fused inference path is part of the model; this location
made ``prediction`` and ``scale`` import each other). ``segger.scale.fastgnn`` is that same module
object, so old imports and patches keep working."""

import sys

from segger.models import fused as _fused

sys.modules[__name__] = _fused
