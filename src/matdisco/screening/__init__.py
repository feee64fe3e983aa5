"""Combinatorial screening: enumeration, streaming prediction at scale, hull analysis.

Notebook-friendly API (what ``matdisco screen`` calls)::

    from matdisco import screening
    space = screening.CompositionSpace(elements=["Li", "Fe", "Mn", "O"], arities=(2, 3, 4))
    len(space)                                                   # exact count
    model = screening.distill("runs/elemnet", "runs/fast")        # fast student model
    screening.screen(space, "runs/fast", "scan", keep_below=-0.2)  # resumable, Parquet
    table = screening.open_results("scan").to_table()             # pyarrow dataset
    cand, per_system, summary = screening.hull_report("scan", "known.csv", "scan/hull")

The prediction and hull functions are loaded on first use (they import torch and
pymatgen).
"""

from typing import Any

from matdisco.screening.enumerate import (
    ELEMENT_GROUPS,
    Chunk,
    CompositionSpace,
    brute_force_compositions,
    count_ratios,
    expand_elements,
    ratio_patterns,
)

__all__ = [
    "ELEMENT_GROUPS",
    "Chunk",
    "CompositionSpace",
    "brute_force_compositions",
    "count_ratios",
    "expand_elements",
    "ratio_patterns",
]

_LAZY = {
    "screen": "matdisco.screening.run", "open_results": "matdisco.screening.run",
    "read_manifest": "matdisco.screening.run", "distill": "matdisco.screening.distill",
    "load_model": "matdisco.screening.models",
    "analyse_screen": "matdisco.screening.hull", "hull_report": "matdisco.screening.hull",
    "load_references": "matdisco.screening.hull", "ReferenceHulls": "matdisco.screening.hull",
    "spurious_stable": "matdisco.screening.hull",
    "plot_phase_diagram": "matdisco.screening.hull",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
