"""matdisco: deep-learning methods of materials discovery in one package."""

from __future__ import annotations

__version__ = "0.1.0"


class MatdiscoError(ValueError):
    """Error raised for bad user input (files, rows, fields, configurations).

    The message always names the offending file, row, field or value.
    """


__all__ = ["MatdiscoError", "__version__"]
