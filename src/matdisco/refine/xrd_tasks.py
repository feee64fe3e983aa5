"""Imperfect XRD phase sets for imitation refinement: NMF phases of simulated
composition-spread libraries, matched to the libraries' true phases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict, Unpack

import numpy as np

from matdisco import MatdiscoError
from matdisco.xrd import PeakList, composition_library, default_two_theta, match_phases, phasemap
from matdisco.xrd.simulate import CRYSTAL_SYSTEMS


@dataclass
class PhaseSet:
    """Extracted phases with their true counterparts (for evaluation only).

    Attributes
    ----------
    nmf : ndarray (n, L)
        Basis patterns from phase mapping, maximum 1.
    raw : ndarray (n, L)
        For each matched true phase, the library pattern in which that phase has the
        largest fraction (the best a "raw" measurement offers).
    true : ndarray (n, L)
        The matched true phase patterns.
    crystal_system : ndarray of int (n,)
        Crystal-system index of the matched true phase (-1 when unknown).
    correlation : ndarray (n,)
        Correlation of each basis pattern with its match.
    library : ndarray of int (n,)
        Index of the library each phase comes from.
    """

    nmf: np.ndarray
    raw: np.ndarray
    true: np.ndarray
    crystal_system: np.ndarray
    correlation: np.ndarray
    library: np.ndarray


class _LibraryKwargs(TypedDict, total=False):
    """Keyword arguments of :func:`~matdisco.xrd.composition_library` that
    :func:`nmf_phase_set` passes on."""

    max_strain: float
    background: float
    noise: float
    max_phases_per_sample: int
    spread: float


def nmf_phase_set(phases: Sequence[PeakList], n_libraries: int, n_phases: int = 4,
                  n_samples: int = 50, two_theta: np.ndarray | None = None,
                  method: str = "nmf", seed: int = 0, n_components: int | None = None,
                  **library_kwargs: Unpack[_LibraryKwargs]) -> PhaseSet:
    """Simulate ``n_libraries`` libraries of ``n_phases`` random phases each, phase-map
    every library with ``method`` and match basis patterns to the true phases.

    ``n_components`` is the number of basis patterns asked of the phase mapping (default
    ``n_phases``); fewer than the true number of phases (a mismatched K, as in practice
    when the number of phases is unknown) gives mixed, impure basis patterns. Extra
    keyword arguments go to :func:`~matdisco.xrd.composition_library` (``max_strain``,
    ``spread``, ``max_phases_per_sample``, ``background``, ``noise``).
    """
    grid = default_two_theta() if two_theta is None else np.asarray(two_theta, float)
    if len(phases) < n_phases:
        raise MatdiscoError(f"need at least n_phases={n_phases} phases, got {len(phases)}")
    rng = np.random.default_rng(seed)
    nmf, raw, true, cs, cc, lib = [], [], [], [], [], []
    for li in range(n_libraries):
        idx = rng.choice(len(phases), size=n_phases, replace=False)
        chosen = [phases[i] for i in idx]
        L = composition_library(chosen, n_samples, grid, seed=int(rng.integers(2**31)),
                                **library_kwargs)
        res = phasemap(L.patterns, n_components or n_phases, method=method, seed=li)
        assign, corr = match_phases(res.basis, L.true_phases)
        for b, (a, c) in enumerate(zip(assign, corr, strict=True)):
            if a < 0:
                continue
            nmf.append(res.basis[b])
            raw.append(L.patterns[int(np.argmax(L.fractions[:, a]))])
            true.append(L.true_phases[a])
            sysname = chosen[a].crystal_system
            cs.append(CRYSTAL_SYSTEMS.index(sysname) if sysname in CRYSTAL_SYSTEMS else -1)
            cc.append(c)
            lib.append(li)
    return PhaseSet(np.array(nmf, np.float32), np.array(raw, np.float32),
                    np.array(true, np.float32), np.array(cs), np.array(cc), np.array(lib))
