"""De-identification of DICOM at intake: PS3.15 Table E.1-1 as data, a one-pass engine, a checker.

Pure library: no Django. See docs/deidentification.md.
"""

from .engine import Deidentifier, DeidError, DeidResult, LinkIds
from .meta import image_meta
from .profile import SafePrivate, default_safe_private, profile_names

__all__ = [
    "DeidError", "DeidResult", "Deidentifier", "LinkIds", "SafePrivate", "default_safe_private",
    "image_meta", "profile_names",
]
