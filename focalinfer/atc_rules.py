"""ATC's documented option rules that more than one stage reads (precision searches, om builds, the docs).

Shared, not a stage: ``precision`` and ``atc`` may not import each other, so the rule lives here once.
Source: CANN commercial 8.0 ATC documentation, the ``--keep_dtype`` and ``--precision_mode`` pages
(docs/precision.md quotes them).
"""

from __future__ import annotations

# The one mode that keeps every node's original dtype, so a keep list has nothing to keep.
KEEP_ORIGIN_MODE = "must_keep_origin_dtype"
# Its --precision_mode_v2 spelling.
KEEP_ORIGIN_MODE_V2 = "origin"
# ATC's default --precision_mode for Ascend310P when none is given.
DEFAULT_PRECISION_MODE = "force_fp16"


def keep_dtype_applies(precision_mode: str | None = None, precision_mode_v2: str | None = None) -> bool:
    """Whether ATC reads ``--keep_dtype`` under this mode: under every ``--precision_mode`` but
    must_keep_origin_dtype (and every ``--precision_mode_v2`` but origin). None is ATC's default."""
    if precision_mode_v2 is not None:
        return precision_mode_v2 != KEEP_ORIGIN_MODE_V2
    return (precision_mode or DEFAULT_PRECISION_MODE) != KEEP_ORIGIN_MODE
