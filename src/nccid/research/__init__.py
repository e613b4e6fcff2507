"""Research access: cohorts, exports, datasets, AI validation, modelling and teaching.

``nccid.research.open(user, filter=None, **criteria)`` opens a cohort from Python.
"""

from __future__ import annotations

from typing import Any


def open(user_or_none: Any = None, filter: Any = None, **kwargs: Any):  # noqa: A001
    """Open the cohort ``user`` may see: ``.counts``, ``.clinical()``, ``.images()``,
    ``.torch_dataset(...)``. See ``nccid.research.dataset``."""
    from .dataset import open_cohort

    return open_cohort(user_or_none, filter, **kwargs)


__all__ = ["open"]
