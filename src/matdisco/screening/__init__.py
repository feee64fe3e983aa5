"""Combinatorial screening: enumeration, streaming prediction at scale, hull analysis."""

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
