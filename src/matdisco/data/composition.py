"""Composition parsing (pymatgen) and element-fraction encoding."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
from pymatgen.core import Composition, Element

from matdisco import MatdiscoError

#: The 86 elements of ElemNet's input layer, in its order.
ELEMNET_ELEMENTS: tuple[str, ...] = tuple(
    "H Li Be B C N O F Na Mg Al Si P S Cl K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se "
    "Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu "
    "Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Ac Th Pa U Np Pu".split()
)


def _where(row: int | None, source: str | None) -> str:
    """``"source: row N: "`` for messages (the form of every input error); ``row`` is a
    0-based index, printed + 1."""
    parts = []
    if source:
        parts.append(str(source))
    if row is not None:
        parts.append(f"row {row + 1}")
    return (": ".join(parts) + ": ") if parts else ""


@lru_cache(maxsize=1_000_000)
def _parse(formula: str) -> tuple[tuple[str, float], ...]:
    comp = Composition(formula)
    return tuple((str(el), float(amt)) for el, amt in comp.get_el_amt_dict().items())


def _zero_amount(formula: str) -> str | None:
    """The first element written with an amount of exactly zero (``Fe0O3`` -> ``"Fe"``),
    which pymatgen drops silently; None if there is none or the formula does not parse."""
    if "0" not in formula:
        return None
    try:
        raw = Composition(formula)._parse_formula(formula)  # instance method in old pymatgen
    except (ValueError, KeyError, TypeError):
        return None
    return next((el for el, amt in raw.items() if amt == 0), None)


def _is_missing(value: object) -> bool:
    """None, NaN, ``pd.NA`` and the like (a scalar that pandas reads as missing)."""
    import pandas as pd

    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):  # arrays, lists: not a missing scalar
        return False


def _is_number(text: str) -> bool:
    """Whether ``text`` reads as a finite number (``"NaN"`` is sodium nitride)."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def parse_formula(formula: object, row: int | None = None, source: str | None = None,
                  elements: Sequence[str] | None = ELEMNET_ELEMENTS) -> dict[str, float]:
    """Parse a chemical formula into ``{element: amount}`` with pymatgen.

    Accepts ``Fe2O3``, ``Fe0.4Ni0.6``, ``(Li2O)0.5(FeO)0.5``, ``Ca(OH)2``.

    Parameters
    ----------
    formula : str
        The formula.
    row, source : optional
        0-based index of the data row (``enumerate`` order) and file name, used in
        error messages. Messages print ``row + 1``: rows are numbered from 1 (row 1
        is the first data row, the line after a CSV header).
    elements : sequence of str or None
        Allowed elements; None allows every element pymatgen knows.

    Raises
    ------
    MatdiscoError
        For empty/unparseable formulas, unknown elements, or non-positive amounts,
        naming the row and the value. An amount written as zero (``Fe0O3``) is dropped,
        as pymatgen does; the file loaders refuse it.
    """
    where = _where(row, source)
    if isinstance(formula, int | float | np.number) and not (
            isinstance(formula, float | np.floating) and math.isnan(formula)):
        raise MatdiscoError(f"{where}formula {formula!r} is a number, not a chemical "
                            "formula (wrong formula column?)")
    if not isinstance(formula, str):
        if _is_missing(formula):
            raise MatdiscoError(f"{where}empty or missing formula {formula!r}")
        raise MatdiscoError(f"{where}formula {formula!r} has type {type(formula).__name__}, "
                            "not a text chemical formula (wrong formula column?)")
    if not formula.strip():
        raise MatdiscoError(f"{where}empty or missing formula {formula!r}")
    if _is_number(formula):
        raise MatdiscoError(f"{where}formula {formula!r} is a number, not a chemical "
                            "formula (wrong formula column?)")
    try:
        pairs = _parse(formula.strip())
    except (ValueError, KeyError, TypeError) as exc:
        raise MatdiscoError(f"{where}cannot parse formula {formula!r} ({exc})") from None
    if not pairs:
        raise MatdiscoError(f"{where}formula {formula!r} contains no element")
    allowed = set(elements) if elements is not None else None
    out: dict[str, float] = {}
    for el, amt in pairs:
        if allowed is not None and el not in allowed:
            if not Element.is_valid_symbol(el):  # pymatgen reads 'X', 'E' as dummies
                raise MatdiscoError(f"{where}formula {formula!r} contains {el!r}, which is "
                                    "not a chemical element")
            raise MatdiscoError(
                f"{where}formula {formula!r} contains element {el!r} that is not in the "
                f"model's element list"
            )
        if not math.isfinite(amt) or amt <= 0:
            what = "non-finite" if not math.isfinite(amt) else "zero or negative"
            raise MatdiscoError(f"{where}formula {formula!r} has a {what} amount of {el}")
        out[el] = amt
    return out


def fractions(formula: object, row: int | None = None, source: str | None = None,
              elements: Sequence[str] | None = ELEMNET_ELEMENTS) -> dict[str, float]:
    """Atomic fractions of a formula (summing to one)."""
    amounts = parse_formula(formula, row, source, elements)
    total = sum(amounts.values())
    return {el: a / total for el, a in amounts.items()}


def reduced_key(formula: str) -> str:
    """A canonical key of the reduced composition (``Fe4O6`` and ``Fe2O3`` agree)."""
    fr = fractions(formula, elements=None)
    return " ".join(f"{el}{fr[el]:.6f}" for el in sorted(fr))


def chemical_system(formula: str) -> str:
    """``"Fe-O"``-style chemical system of a formula (sorted element symbols)."""
    return "-".join(sorted(parse_formula(formula, elements=None)))


def encode_fractions(formulas: Iterable[object], elements: Sequence[str] = ELEMNET_ELEMENTS,
                     source: str | None = None) -> np.ndarray:
    """Encode formulas as element-fraction vectors over a fixed element list.

    Parameters
    ----------
    formulas : iterable of str
        Formulas.
    elements : sequence of str
        The element order of the columns (recorded in every run).
    source : str, optional
        File name for error messages.

    Returns
    -------
    ndarray of shape (n, len(elements)), float32
    """
    index = {el: i for i, el in enumerate(elements)}
    formulas = list(formulas)
    out = np.zeros((len(formulas), len(elements)), dtype=np.float32)
    for r, f in enumerate(formulas):
        for el, v in fractions(f, r, source, elements).items():
            out[r, index[el]] = v
    return out
