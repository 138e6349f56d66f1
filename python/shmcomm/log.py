"""shmcomm logs through ``logging.getLogger("shmcomm")``, silent by default (a NullHandler).
``SHMCOMM_LOG_LEVEL=DEBUG`` (or INFO, WARNING, ...) sets the level and prints to stderr."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("shmcomm")
logger.addHandler(logging.NullHandler())

_level = os.environ.get("SHMCOMM_LOG_LEVEL", "").strip().upper()
if _level:
    if _level.isdigit():
        logger.setLevel(int(_level))
    elif isinstance(logging.getLevelName(_level), int):
        logger.setLevel(_level)
    if not any(isinstance(h, logging.StreamHandler) for h in logger.handlers):
        _handler = logging.StreamHandler()
        _handler.setFormatter(logging.Formatter("%(asctime)s shmcomm %(levelname)s: %(message)s"))
        logger.addHandler(_handler)
