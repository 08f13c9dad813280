"""Moved to :mod:`segger.utils.atomic` (atomic writes are not export-specific); kept for old imports."""

import os  # noqa: F401  (tests patch ``segger.export.atomic.os.replace``)

from segger.utils.atomic import *  # noqa: F401,F403
from segger.utils.atomic import __all__  # noqa: F401
