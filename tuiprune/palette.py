"""The colours that tell runs apart wherever several are shown together: the report's figures
and the dashboard's compare screen and run browser (torch-free, no plotting or terminal code).

Okabe–Ito, readable by colour-blind readers. Run ``i`` (in the order it is listed) has colour
``RUN_COLOURS[i % 7]`` and letter :func:`run_letter` ``(i)`` everywhere it appears.
"""

from __future__ import annotations

RUN_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def run_letter(i: int) -> str:
    """A, B, …, Z, AA, AB, …: the label of run ``i``."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out
