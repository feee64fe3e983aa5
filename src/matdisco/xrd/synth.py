"""Synthetic data sets of 1D patterns: ideal pure/mixture sets, degraded patterns, and
composition-spread libraries with alloying shifts, background and noise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

import numpy as np

from matdisco import MatdiscoError
from matdisco.xrd.simulate import CRYSTAL_SYSTEMS, PeakList, default_two_theta, render_peaks

PURITY_CLASSES: tuple[str, ...] = ("pure", "mixture")


class Profile(TypedDict):
    """Peak-profile keyword arguments of :func:`~matdisco.xrd.simulate.render_peaks`."""

    u: float
    v: float
    w: float
    eta: float


def random_profile(rng: np.random.Generator, width_scale: float = 1.0) -> Profile:
    """Random Caglioti/pseudo-Voigt parameters of a plausible laboratory diffractometer."""
    return {
        "u": float(rng.uniform(0.002, 0.03)) * width_scale,
        "v": float(rng.uniform(-0.01, 0.0)) * width_scale,
        "w": float(rng.uniform(0.01, 0.04)) * width_scale,
        "eta": float(rng.uniform(0.2, 0.8)),
    }


def _norm(x: np.ndarray) -> np.ndarray:
    m = x.max()
    return x / m if m > 0 else x


def pure_pattern(phase: PeakList, two_theta: np.ndarray, rng: np.random.Generator,
                 max_strain: float = 0.01, noise: float = 0.0) -> np.ndarray:
    """One ideal pattern of ``phase`` with random profile, small strain and optional noise."""
    p = render_peaks(phase, two_theta, strain=float(rng.uniform(-max_strain, max_strain)),
                     **random_profile(rng))
    if noise > 0:
        p = np.clip(p + rng.normal(0, noise, p.shape), 0, None)
    return _norm(p)


def mixture_pattern(phases: Sequence[PeakList], fractions: Sequence[float] | np.ndarray,
                    two_theta: np.ndarray, rng: np.random.Generator,
                    max_strain: float = 0.01, noise: float = 0.0) -> np.ndarray:
    """Weighted sum of the (individually normalised) patterns of ``phases``."""
    prof = random_profile(rng)
    out: np.ndarray = np.zeros_like(two_theta, dtype=float)
    for ph, f in zip(phases, fractions, strict=True):
        out += f * render_peaks(ph, two_theta, strain=float(rng.uniform(-max_strain, max_strain)),
                                **prof)
    if noise > 0:
        out = np.clip(out + rng.normal(0, noise, out.shape), 0, None)
    return _norm(out)


def ideal_dataset(phases: Sequence[PeakList], n: int, two_theta: np.ndarray | None = None,
                  task: str = "purity", seed: int = 0, mixture_sizes: Sequence[int] = (2, 3),
                  min_fraction: float = 0.15, noise: float | tuple[float, float] = 0.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Ideal simulated patterns and labels.

    Parameters
    ----------
    phases : list of PeakList
        Phases to draw from.
    n : int
        Number of patterns.
    two_theta : ndarray, optional
        Grid (default length 2000, 10–80°).
    task : {"purity", "crystal_system"}
        ``purity``: half pure phases (label 0) and half 2–3-phase mixtures (label 1);
        ``crystal_system``: pure phases labelled by crystal system (7 classes, index in
        :data:`~matdisco.xrd.CRYSTAL_SYSTEMS`).
    seed : int
        Random seed.
    mixture_sizes : sequence of int
        Numbers of phases in a mixture.
    min_fraction : float
        Minimum fraction of every phase of a mixture.
    noise : float or (float, float)
        Gaussian noise level (relative to the maximum), or a range ``(lo, hi)`` from which
        each pattern draws its own level (so that a classifier cannot take the noise level
        for a class cue).

    Returns
    -------
    X : ndarray, shape (n, len(two_theta))
    y : ndarray of int
    """
    grid = default_two_theta() if two_theta is None else np.asarray(two_theta, float)
    rng = np.random.default_rng(seed)
    if len(phases) < 2:
        raise MatdiscoError("need at least 2 phases to build an ideal data set")
    # a mixture cannot hold more distinct phases than there are
    sizes = [int(k) for k in mixture_sizes if 1 <= k <= len(phases)]
    if task == "purity" and not sizes:
        raise MatdiscoError(f"mixture_sizes {list(mixture_sizes)} allow no mixture of "
                            f"{len(phases)} phases")
    X = np.zeros((n, len(grid)), np.float32)
    y = np.zeros(n, np.int64)
    lo: float
    hi: float
    if np.isscalar(noise):  # np.isscalar does not narrow the union for mypy
        lo = hi = cast(float, noise)
    else:
        noise_range = cast(tuple[float, float], noise)
        lo, hi = float(noise_range[0]), float(noise_range[1])
    if not 0 <= lo <= hi:
        raise MatdiscoError(f"noise must be >= 0 (or a range lo <= hi), got {noise!r}")

    def level() -> float:  # no draw for a fixed level: the random stream stays as it was
        return float(rng.uniform(lo, hi)) if hi > lo else lo

    if task == "purity":
        for i in range(n):
            lvl = level()
            if i % 2 == 0:
                X[i] = pure_pattern(phases[int(rng.integers(len(phases)))], grid, rng, noise=lvl)
            else:
                k = int(rng.choice(sizes))
                idx = rng.choice(len(phases), size=k, replace=False)
                f = rng.dirichlet(np.ones(k))
                f = min_fraction + (1 - k * min_fraction) * f
                X[i] = mixture_pattern([phases[j] for j in idx], f, grid, rng, noise=lvl)
                y[i] = 1
    elif task == "crystal_system":
        cs = [CRYSTAL_SYSTEMS.index(p.crystal_system) if p.crystal_system in CRYSTAL_SYSTEMS
              else -1 for p in phases]
        usable = [i for i, c in enumerate(cs) if c >= 0]
        if not usable:
            raise MatdiscoError("no phase has a known crystal system")
        for i in range(n):
            lvl = level()
            j = usable[rng.integers(len(usable))]
            X[i] = pure_pattern(phases[j], grid, rng, noise=lvl)
            y[i] = cs[j]
    else:
        raise MatdiscoError(f"unknown task {task!r} (purity, crystal_system)")
    return X, y


def degrade(phase: PeakList, two_theta: np.ndarray, rng: np.random.Generator, *,
            p_missing: float = 0.25, n_extra: tuple[int, int] = (1, 5),
            max_shift: float = 0.3, max_strain: float = 0.01, background: float = 0.15,
            noise: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """Experiment-like degraded pattern of a known phase.

    Drops peaks (probability ``p_missing`` each, never the strongest), adds spurious
    peaks, shifts by a 2θ offset and a lattice strain, adds a smooth background and noise.

    Returns
    -------
    degraded, clean : ndarray
        The degraded pattern and the clean pattern of the same phase (same profile, no
        shift), both scaled to maximum 1.
    """
    prof = random_profile(rng)
    clean = _norm(render_peaks(phase, two_theta, **prof))
    keep = rng.random(len(phase.two_theta)) >= p_missing
    keep[np.argmax(phase.intensity)] = True
    k = int(rng.integers(n_extra[0], n_extra[1] + 1))
    tt = np.concatenate([phase.two_theta[keep],
                         rng.uniform(two_theta[0], two_theta[-1], k)])
    it = np.concatenate([phase.intensity[keep], rng.uniform(5, 50, k)])
    pk = PeakList(tt, it, phase.name, phase.crystal_system)
    x = render_peaks(pk, two_theta, strain=float(rng.uniform(-max_strain, max_strain)),
                     shift=float(rng.uniform(-max_shift, max_shift)), **prof)
    x = x + _background(two_theta, rng, background)
    x = np.clip(x + rng.normal(0, noise, x.shape), 0, None)
    return _norm(x), clean


def degraded_dataset(phases: Sequence[PeakList], n: int, two_theta: np.ndarray | None = None,
                     seed: int = 0, **kwargs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` degraded patterns of random phases with crystal-system labels.

    Returns ``(X, y, clean)``; see :func:`degrade` for the keyword arguments.
    """
    grid = default_two_theta() if two_theta is None else np.asarray(two_theta, float)
    rng = np.random.default_rng(seed)
    usable = [p for p in phases if p.crystal_system in CRYSTAL_SYSTEMS]
    X = np.zeros((n, len(grid)), np.float32)
    C = np.zeros_like(X)
    y = np.zeros(n, np.int64)
    for i in range(n):
        ph = usable[rng.integers(len(usable))]
        X[i], C[i] = degrade(ph, grid, rng, **kwargs)
        y[i] = CRYSTAL_SYSTEMS.index(ph.crystal_system)
    return X, y, C


def _background(two_theta: np.ndarray, rng: np.random.Generator, level: float) -> np.ndarray:
    t = (two_theta - two_theta[0]) / (two_theta[-1] - two_theta[0])
    decay = np.exp(-t / rng.uniform(0.1, 0.5))
    hump = np.exp(-0.5 * ((t - rng.uniform(0.2, 0.5)) / rng.uniform(0.05, 0.2)) ** 2)
    a, b = rng.uniform(0, level, 2)
    return a * decay + b * hump


@dataclass
class XRDLibrary:
    """A simulated composition-spread library.

    Attributes
    ----------
    two_theta : ndarray (L,)
        Grid.
    patterns : ndarray (n_samples, L)
        Measured patterns (with shifts, background, noise), maximum 1.
    compositions : ndarray (n_samples, 3)
        Ternary compositions.
    fractions : ndarray (n_samples, K)
        True phase fractions (kept for evaluation only).
    true_phases : ndarray (K, L)
        True phase patterns (at the fraction-weighted mean strain), maximum 1.
    phase_names, crystal_systems : list of str
        Names and crystal systems of the K phases.
    """

    two_theta: np.ndarray
    patterns: np.ndarray
    compositions: np.ndarray
    fractions: np.ndarray
    true_phases: np.ndarray
    phase_names: list[str] = field(default_factory=list)
    crystal_systems: list[str] = field(default_factory=list)

    def to_npz_dict(self) -> dict[str, np.ndarray]:
        """Arrays for ``numpy.savez`` (no pickled objects)."""
        return {"two_theta": self.two_theta, "X": self.patterns,
                "compositions": self.compositions, "fractions": self.fractions,
                "true_phases": self.true_phases,
                "phase_names": np.array(self.phase_names, dtype=str),
                "crystal_systems": np.array(self.crystal_systems, dtype=str)}


def composition_library(phases: Sequence[PeakList], n_samples: int = 60,
                        two_theta: np.ndarray | None = None, seed: int = 0, *,
                        max_strain: float = 0.004, background: float = 0.1,
                        noise: float = 0.01, max_phases_per_sample: int = 3,
                        spread: float = 0.05) -> XRDLibrary:
    """Simulate a ternary composition-spread library made of ``phases``.

    Every phase owns a random region of the composition triangle; the phase fractions of a
    sample decay with the distance to the phase centres (at most
    ``max_phases_per_sample`` phases coexist, Gibbs-like). Each phase's lattice strains
    linearly with composition (alloying shifts up to ``max_strain``). All samples share
    the instrument profile; each gets its own background and noise. ``spread`` is the
    width (squared composition distance) of a phase's region: larger values give more
    multi-phase samples and more overlap between phases (harder phase mapping).
    """
    if spread <= 0:
        raise MatdiscoError(f"spread must be positive, got {spread}")
    if n_samples < 1:
        raise MatdiscoError(f"n_samples must be ≥ 1, got {n_samples}")
    if not background >= 0 or not noise >= 0:
        raise MatdiscoError(f"background and noise must be ≥ 0, got background={background}, "
                            f"noise={noise}")
    grid = default_two_theta() if two_theta is None else np.asarray(two_theta, float)
    rng = np.random.default_rng(seed)
    k = len(phases)
    if k < 1:
        raise MatdiscoError("a library needs at least one phase")
    comp = rng.dirichlet(np.ones(3), size=n_samples)
    centres = rng.dirichlet(np.ones(3), size=k)
    # make centres distinct: push them towards distinct random corners/edges
    d2 = ((comp[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    logits = -d2 / spread
    frac = np.exp(logits - logits.max(1, keepdims=True))
    if max_phases_per_sample < k:
        cut = np.sort(frac, 1)[:, -max_phases_per_sample][:, None]
        frac[frac < cut] = 0.0
    frac[frac < 0.05] = 0.0
    frac /= frac.sum(1, keepdims=True)
    direction = rng.normal(size=(k, 3))
    strain = max_strain * np.tanh((comp - 1 / 3) @ direction.T * 2)  # (n, k)
    prof = random_profile(rng)
    X = np.zeros((n_samples, len(grid)), np.float32)
    for i in range(n_samples):
        x = np.zeros(len(grid))
        for j in range(k):
            if frac[i, j] > 0:
                x += frac[i, j] * render_peaks(phases[j], grid, strain=float(strain[i, j]),
                                               **prof)
        x += _background(grid, rng, background)
        x = np.clip(x + rng.normal(0, noise, x.shape), 0, None)
        X[i] = _norm(x)
    true = np.zeros((k, len(grid)), np.float32)
    for j in range(k):
        wsum = frac[:, j].sum()
        mean_strain = float((frac[:, j] * strain[:, j]).sum() / wsum) if wsum > 0 else 0.0
        true[j] = _norm(render_peaks(phases[j], grid, strain=mean_strain, **prof))
    return XRDLibrary(grid, X, comp, frac.astype(np.float32), true,
                      [p.name for p in phases], [p.crystal_system for p in phases])
