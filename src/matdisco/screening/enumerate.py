"""Lazy, deterministic enumeration of reduced compositions ``A_w B_x C_y D_z``.

The space of a :class:`CompositionSpace` is every composition of ``k`` distinct allowed
elements (``k`` in ``arities``) with positive integer amounts summing to at most
``max_atoms``, each reduced ratio counted once (amounts with a common divisor are
skipped). It is laid out as a flat, numbered sequence::

    arity 1 block | arity 2 block | ...
    block k: (element combination c, ratio pattern r) -> offset_k + c * R_k + r

where the element combinations are the lexicographic combinations of the allowed element
indices (filtered by ``must_contain``) and the ratio patterns are the ``R_k`` k-tuples of
positive integers with sum <= ``max_atoms`` and gcd 1, in lexicographic order. Any index
range can therefore be generated without enumerating what precedes it, chunks are
numbered ranges of this sequence, and the size is known exactly from
``sum_k C(n - m, k - m) * R_k`` with ``R_k = sum_d mu(d) C(floor(N / d), k)``.

Chunks go straight to model inputs as element-fraction matrices (no pymatgen objects).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from matdisco import MatdiscoError
from matdisco.data.composition import ELEMNET_ELEMENTS

#: Largest arity and atom count accepted (sanity limits of the enumerator).
MAX_ARITY = 6
MAX_ATOMS = 60

#: Named element groups usable in filters (``"3d"``, ``"alkali"``, ...).
ELEMENT_GROUPS: dict[str, tuple[str, ...]] = {
    "3d": tuple("Sc Ti V Cr Mn Fe Co Ni Cu Zn".split()),
    "4d": tuple("Y Zr Nb Mo Tc Ru Rh Pd Ag Cd".split()),
    "5d": tuple("La Hf Ta W Re Os Ir Pt Au Hg".split()),
    "alkali": tuple("Li Na K Rb Cs".split()),
    "alkaline_earth": tuple("Be Mg Ca Sr Ba".split()),
    "lanthanides": tuple("La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu".split()),
    "actinides": tuple("Ac Th Pa U Np Pu".split()),
    "halogens": tuple("F Cl Br I".split()),
    "chalcogens": tuple("O S Se Te".split()),
    "pnictogens": tuple("N P As Sb Bi".split()),
    "noble_gases": tuple("He Ne Ar Kr Xe Rn".split()),
}


def _mobius(n: int) -> int:
    result, m, p = 1, n, 2
    while p * p <= m:
        if m % p == 0:
            m //= p
            if m % p == 0:
                return 0
            result = -result
        p += 1
    if m > 1:
        result = -result
    return result


def count_ratios(arity: int, max_atoms: int) -> int:
    """Number of reduced ratio patterns: k-tuples of positive integers, sum <= N, gcd 1.

    Uses Moebius inversion, ``sum_d mu(d) * C(floor(N / d), k)``.
    """
    return sum(_mobius(d) * math.comb(max_atoms // d, arity) for d in range(1, max_atoms + 1))


def ratio_patterns(arity: int, max_atoms: int) -> np.ndarray:
    """All reduced ratio patterns in lexicographic order, shape ``(R_k, k)`` int16."""
    rows = []

    def rec(prefix: list[int], remaining: int, left: int) -> None:
        if left == 0:
            if math.gcd(*prefix) == 1:
                rows.append(tuple(prefix))
            return
        for a in range(1, remaining - (left - 1) + 1):
            rec(prefix + [a], remaining - a, left - 1)

    rec([], max_atoms, arity)
    return np.array(rows, dtype=np.int16).reshape(-1, arity)


def _combinations(n: int, k: int) -> np.ndarray:
    """All k-combinations of ``range(n)`` in lexicographic order, shape (C(n, k), k)."""
    if k == 0:
        return np.zeros((1, 0), dtype=np.int64)
    if k > n:
        return np.zeros((0, k), dtype=np.int64)
    c = np.arange(n, dtype=np.int64)[:, None]
    for _ in range(1, k):
        last = c[:, -1]
        counts = n - 1 - last
        total = int(counts.sum())
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        new = np.repeat(last + 1, counts) + (np.arange(total) - starts)
        c = np.concatenate([np.repeat(c, counts, axis=0), new[:, None]], axis=1)
    return c


def expand_elements(items: Iterable[str] | str | None) -> list[str]:
    """Expand element symbols and group names (``"3d"``, ``"halogens"``...) into symbols.

    Accepts a list or a comma/space separated string. Unknown names raise
    :class:`MatdiscoError` naming the value.
    """
    from pymatgen.core.periodic_table import Element

    if items is None:
        return []
    if isinstance(items, str):
        items = items.replace(",", " ").split()
    out: list[str] = []
    for it in items:
        s = str(it).strip()
        if not s:
            continue
        if s in ELEMENT_GROUPS:
            out.extend(e for e in ELEMENT_GROUPS[s] if e not in out)
        elif Element.is_valid_symbol(s):
            if s not in out:
                out.append(s)
        else:
            raise MatdiscoError(
                f"unknown element symbol or group {s!r} (groups: {', '.join(ELEMENT_GROUPS)})"
            )
    return out


@dataclass(frozen=True)
class Chunk:
    """One numbered chunk of a space: global rows ``[start, stop)``."""

    id: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass
class CompositionSpace:
    """A space of reduced compositions over a filtered element list.

    Parameters
    ----------
    elements : sequence of str, optional
        Candidate elements (symbols or group names); defaults to the 86 ElemNet elements.
        The enumeration order of elements is the order of ``universe`` restricted to them.
    exclude : sequence of str, optional
        Elements (or groups) removed from ``elements``.
    must_contain : sequence of str, optional
        Every composition contains all of these elements (e.g. ``["O"]`` for oxides).
    arities : int or sequence of int
        Number of distinct elements per composition; an int ``k`` means ``1..k``.
    max_atoms : int
        Maximum sum of the integer amounts (``w + x + y + z <= max_atoms``).
    chunk_size : int
        Rows per chunk.
    universe : sequence of str
        Element order used for enumeration and formulas (ElemNet order by default).
    """

    elements: Sequence[str] | None = None
    exclude: Sequence[str] | None = None
    must_contain: Sequence[str] | None = None
    arities: int | Sequence[int] = 4
    max_atoms: int = 10
    chunk_size: int = 250_000
    universe: Sequence[str] = field(default=ELEMNET_ELEMENTS)

    def __post_init__(self) -> None:
        universe = tuple(self.universe)
        inc = expand_elements(self.elements) if self.elements is not None else list(universe)
        exc = set(expand_elements(self.exclude))
        must = expand_elements(self.must_contain)
        missing = [e for e in inc if e not in universe]
        if missing:
            raise MatdiscoError(
                f"element(s) {missing} are not in the element list of the space "
                f"({len(universe)} elements)"
            )
        allowed = [e for e in universe if e in set(inc) and e not in exc]
        bad_must = [e for e in must if e not in allowed]
        if bad_must:
            raise MatdiscoError(f"must_contain element(s) {bad_must} are not allowed elements")
        if not allowed:
            raise MatdiscoError("the element filters leave no element")
        ar = (list(range(1, int(self.arities) + 1)) if isinstance(self.arities, (int, np.integer))
              else sorted({int(a) for a in self.arities}))
        if not ar or min(ar) < 1 or max(ar) > MAX_ARITY:
            raise MatdiscoError(f"arity must be within 1..{MAX_ARITY}, got {self.arities!r}")
        if not isinstance(self.max_atoms, (int, np.integer)) or not (
                1 <= self.max_atoms <= MAX_ATOMS):
            raise MatdiscoError(f"max_atoms must be an integer within 1..{MAX_ATOMS}, "
                                f"got {self.max_atoms!r}")
        if self.max_atoms < max(ar):
            raise MatdiscoError(
                f"max_atoms={self.max_atoms} is below the largest arity {max(ar)}: "
                "no composition of that arity fits"
            )
        if not isinstance(self.chunk_size, (int, np.integer)) or self.chunk_size < 1:
            raise MatdiscoError(f"chunk_size must be a positive integer, got {self.chunk_size!r}")
        self.universe = universe
        self.allowed: tuple[str, ...] = tuple(allowed)
        self.required: tuple[str, ...] = tuple(e for e in allowed if e in set(must))
        self.arity_list: tuple[int, ...] = tuple(ar)

    # ------------------------------------------------------------------ description
    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (recorded in manifests; equal dicts mean equal spaces)."""
        return {"allowed": list(self.allowed), "must_contain": list(self.required),
                "arities": list(self.arity_list), "max_atoms": int(self.max_atoms),
                "chunk_size": int(self.chunk_size), "universe": list(self.universe)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompositionSpace:
        """Inverse of :meth:`to_dict`."""
        return cls(elements=d["allowed"], must_contain=d.get("must_contain"),
                   arities=d["arities"], max_atoms=d["max_atoms"],
                   chunk_size=d["chunk_size"], universe=d["universe"])

    # ------------------------------------------------------------------ counting
    def n_combinations(self, arity: int) -> int:
        """Number of element combinations of ``arity`` that satisfy the filters."""
        n, m = len(self.allowed), len(self.required)
        return math.comb(n - m, arity - m) if arity >= m else 0

    def count_by_arity(self) -> dict[int, int]:
        """Exact size of each arity block, computed without enumeration."""
        return {k: self.n_combinations(k) * count_ratios(k, self.max_atoms)
                for k in self.arity_list}

    def __len__(self) -> int:
        return sum(self._counts.values())

    @property
    def n_chunks(self) -> int:
        """Number of chunks."""
        return -(-len(self) // self.chunk_size)

    def chunk(self, i: int) -> Chunk:
        """Chunk ``i`` (0-based)."""
        if not 0 <= i < self.n_chunks:
            raise MatdiscoError(f"chunk {i} out of range (the space has {self.n_chunks})")
        start = i * self.chunk_size
        return Chunk(i, start, min(len(self), start + self.chunk_size))

    def chunks(self) -> Iterator[Chunk]:
        """All chunks in order."""
        for i in range(self.n_chunks):
            yield self.chunk(i)

    # ------------------------------------------------------------------ generation
    @cached_property
    def _ratios(self) -> dict[int, np.ndarray]:
        return {k: ratio_patterns(k, self.max_atoms) for k in self.arity_list}

    @cached_property
    def _combos(self) -> dict[int, np.ndarray]:
        """Element-index combinations per arity (indices into ``allowed``), int16."""
        req = [self.allowed.index(e) for e in self.required]
        free = [i for i in range(len(self.allowed)) if i not in set(req)]
        out = {}
        for k in self.arity_list:
            if k < len(req):
                out[k] = np.zeros((0, k), dtype=np.int16)
                continue
            rest = np.asarray(free, dtype=np.int16)[_combinations(len(free), k - len(req))]
            full = np.concatenate([np.tile(np.array(req, np.int16), (len(rest), 1)), rest],
                                  axis=1)
            full.sort(axis=1)
            # lexicographic order of the sorted combinations
            order = np.lexsort(full.T[::-1]) if len(full) else np.zeros(0, np.int64)
            out[k] = np.ascontiguousarray(full[order])
        return out

    @cached_property
    def _counts(self) -> dict[int, int]:
        return self.count_by_arity()

    def indices(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Element indices (into ``allowed``, -1 padded) and amounts (0 padded) of rows.

        Returns
        -------
        elems : ndarray (n, max_arity) int16
        amounts : ndarray (n, max_arity) int16
        """
        total = len(self)
        if not 0 <= start <= stop <= total:
            raise MatdiscoError(f"row range [{start}, {stop}) outside the space of {total}")
        return self.indices_at(np.arange(start, stop, dtype=np.int64))

    def indices_at(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`indices` for arbitrary global row numbers (any order)."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise MatdiscoError(f"row numbers outside the space of {len(self)}")
        width = max(self.arity_list)
        elems = np.full((len(rows), width), -1, dtype=np.int16)
        amts = np.zeros((len(rows), width), dtype=np.int16)
        offset = 0
        for k, size in self._counts.items():
            sel = (rows >= offset) & (rows < offset + size)
            if sel.any():
                ratios = self._ratios[k]
                c, r = np.divmod(rows[sel] - offset, len(ratios))
                elems[sel, :k] = self._combos[k][c]
                amts[sel, :k] = ratios[r]
            offset += size
        return elems, amts

    def fractions(self, start: int, stop: int,
                  columns: Sequence[str] | None = None) -> np.ndarray:
        """Element-fraction matrix of rows ``[start, stop)`` over ``columns``.

        Parameters
        ----------
        columns : sequence of str, optional
            The model's element order; defaults to ``universe``.
        """
        elems, amts = self.indices(start, stop)
        return self.fractions_from_indices(elems, amts, columns)

    def column_map(self, columns: Sequence[str] | None = None) -> np.ndarray:
        """Column of every allowed element in ``columns``; errors if one is missing."""
        columns = tuple(columns) if columns is not None else tuple(self.universe)
        pos = {e: i for i, e in enumerate(columns)}
        missing = [e for e in self.allowed if e not in pos]
        if missing:
            raise MatdiscoError(
                f"the model's element list ({len(columns)} elements) lacks {missing[:10]} "
                "that the composition space uses"
            )
        return np.array([pos[e] for e in self.allowed], dtype=np.int64)

    def fractions_from_indices(self, elems: np.ndarray, amts: np.ndarray,
                               columns: Sequence[str] | None = None) -> np.ndarray:
        """Dense float32 fraction matrix from :meth:`indices` output."""
        cmap = self.column_map(columns)
        n_cols = len(columns) if columns is not None else len(self.universe)
        fr = np.zeros((len(elems), n_cols), dtype=np.float32)
        a = amts.astype(np.float32)
        a /= a.sum(axis=1, keepdims=True)
        rows = np.arange(len(elems))
        for j in range(elems.shape[1]):
            valid = elems[:, j] >= 0
            fr[rows[valid], cmap[elems[valid, j]]] = a[valid, j]
        return fr

    def formulas(self, start: int, stop: int) -> Any:
        """Formulas (``Fe2O3`` style with explicit ones, ``Fe2O3`` -> ``Fe2O3``, ``FeO`` ->
        ``Fe1O1``) of rows ``[start, stop)`` as a pyarrow string array."""
        elems, amts = self.indices(start, stop)
        return self.formulas_from_indices(elems, amts)

    @cached_property
    def _tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """Byte table of every ``symbol + amount`` token and its length."""
        width = 2 + len(str(self.max_atoms))
        n_el = len(self.allowed)
        tok = np.zeros((n_el + 1, self.max_atoms + 1, width), dtype=np.uint8)
        length = np.zeros((n_el + 1, self.max_atoms + 1), dtype=np.int64)
        for i, el in enumerate(self.allowed):
            for a in range(1, self.max_atoms + 1):
                t = f"{el}{a}".encode()
                tok[i, a, :len(t)] = np.frombuffer(t, dtype=np.uint8)
                length[i, a] = len(t)
        return tok, length

    def formulas_from_indices(self, elems: np.ndarray, amts: np.ndarray) -> Any:
        """Vectorized formula strings (pyarrow ``StringArray``) from :meth:`indices`.

        Built directly as an Arrow buffer from a byte table of ``symbol + amount``
        tokens, with no per-row Python work.
        """
        import pyarrow as pa

        tok, length = self._tokens
        e = elems.astype(np.int64)
        e[e < 0] = len(self.allowed)
        a = amts.astype(np.int64)
        lens = length[e, a]  # (n, k)
        data = tok[e, a][np.arange(tok.shape[2]) < lens[..., None]]
        offsets = np.zeros(len(e) + 1, dtype=np.int64)
        np.cumsum(lens.sum(axis=1), out=offsets[1:])
        if offsets[-1] < 2**31:
            return pa.StringArray.from_buffers(len(e), pa.py_buffer(offsets.astype(np.int32)),
                                               pa.py_buffer(data))
        return pa.LargeStringArray.from_buffers(len(e), pa.py_buffer(offsets),
                                                pa.py_buffer(data))

    def sparse_inputs(self, elems: np.ndarray, amts: np.ndarray,
                      columns: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Model columns (int64, padded with 0) and fractions (float32, padded with 0)."""
        cmap = self.column_map(columns)
        valid = elems >= 0
        cols = np.where(valid, cmap[np.where(valid, elems, 0)], 0)
        vals = amts.astype(np.float32)
        vals /= vals.sum(axis=1, keepdims=True)
        return cols, vals

    def iter_fractions(self, batch_size: int = 65536, columns: Sequence[str] | None = None
                       ) -> Iterator[np.ndarray]:
        """Fraction matrices of the whole space in batches (lazy)."""
        for lo in range(0, len(self), batch_size):
            yield self.fractions(lo, min(len(self), lo + batch_size), columns)


def brute_force_compositions(elements: Sequence[str], arities: Sequence[int], max_atoms: int,
                             must_contain: Sequence[str] = ()) -> set[tuple[tuple[str, int], ...]]:
    """Reference enumeration by brute force (every amount vector, reduced, deduplicated).

    For testing the counting formula and the enumerator on small spaces.
    """
    out: set[tuple[tuple[str, int], ...]] = set()
    elements = list(elements)
    for k in arities:
        for combo in itertools.combinations(elements, k):
            if not set(must_contain) <= set(combo):
                continue
            for amounts in itertools.product(range(1, max_atoms + 1), repeat=k):
                if sum(amounts) > max_atoms:
                    continue
                g = math.gcd(*amounts)
                out.add(tuple(sorted((e, a // g) for e, a in zip(combo, amounts, strict=True))))
    return out
