"""eval's optional figures beside the scoring: ReaL accuracy (--real-labels) and the comparison
with an earlier run (--reference, gated by --max-drop / --min-ratio).

Both files are read when the step is made, before any inference, so a bad file stops eval first.
"""

from __future__ import annotations

import os
from typing import Callable

from focalinfer.metrics.paired import Gate
from focalinfer.postprocess.paired import against_reference
from focalinfer.postprocess.real_labels import read_real_labels, real_figures
from focalinfer.postprocess.scoring import EvalResult
from focalinfer.records import EvalRecord


def result_amender(real_labels: str | os.PathLike | None = None, reference: str | os.PathLike | None = None,
                   gate: Gate = Gate()) -> Callable[[EvalResult], None] | None:
    """The step that adds these figures to a scored result (None when there is nothing to add)."""
    real = read_real_labels(real_labels) if real_labels else None
    earlier = EvalRecord.read(reference) if reference else None
    if real is None and earlier is None:
        return None

    def amend(result: EvalResult) -> None:
        if real is not None:
            labelled = [*result.images, *result.issues["missing"], *result.issues["invalid"]]
            result.summary.update(real_figures(result.images, labelled, real, real_labels))
        if earlier is not None:
            result.extra["reference"] = against_reference(result.images, earlier, gate)

    return amend
