"""Dictionary indexing and orientation refinement with kikuchipy (the baseline)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from matdisco import MatdiscoError
from matdisco.ebsd.simulate import DetectorConfig, load_master_pattern, make_detector

__all__ = ["DictionaryIndexer", "crystal_map", "refine_orientations", "to_ebsd_signal"]


def to_ebsd_signal(patterns: np.ndarray) -> Any:
    """Wrap a pattern stack ``(n, rows, cols)`` as a 1-D-navigation kikuchipy EBSD signal."""
    import kikuchipy as kp

    return kp.signals.EBSD(np.asarray(patterns, dtype=np.float32))


def crystal_map(quaternions: np.ndarray, shape: tuple[int, ...] | None = None,
                scores: np.ndarray | None = None, step: float = 1.0) -> Any:
    """An orix :class:`~orix.crystal_map.CrystalMap` of Ni (m-3m) orientations.

    Parameters
    ----------
    quaternions : ndarray (n, 4)
    shape : (rows, cols), optional
        Map shape; a single row when omitted.
    scores : ndarray (n,), optional
        A per-point property written as ``scores``.
    step : float
        Step size (same in x and y).
    """
    from orix.crystal_map import CrystalMap, PhaseList
    from orix.quaternion import Rotation

    q = np.asarray(quaternions, dtype=np.float64)
    n = len(q)
    rows, cols = shape if shape is not None else (1, n)
    if rows * cols != n:
        raise MatdiscoError(f"map shape {shape} does not hold {n} orientations")
    y, x = np.divmod(np.arange(n), cols)
    phase = load_master_pattern().phase
    props = {} if scores is None else {"scores": np.asarray(scores, dtype=float)}
    return CrystalMap(rotations=Rotation(q), x=x * step, y=y * step,
                      phase_list=PhaseList(phase), prop=props)


def refine_orientations(patterns: np.ndarray, quaternions: np.ndarray,
                        detector: DetectorConfig | None = None, trust_region: float = 2.0
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Refine orientations against the Ni master pattern with kikuchipy.

    Each pattern's orientation is optimised (SciPy Nelder-Mead on the normalized
    cross-correlation with the pattern simulated at that orientation, projection centre
    fixed), starting from ``quaternions``: dictionary-indexing solutions, or OMNet's
    (dictionary-free indexing).

    Parameters
    ----------
    patterns : ndarray (n, rows, cols)
    quaternions : ndarray (n, 4)
        Initial orientations.
    detector : DetectorConfig, optional
        Detector of the patterns.
    trust_region : float
        Each Euler angle stays within +/- this many degrees of its start.

    Returns
    -------
    (ndarray (n, 4), ndarray (n,))
        Refined orientations and their NCC scores.
    """
    from matdisco.ebsd.indexer import check_patterns

    detector = detector or DetectorConfig()
    x = check_patterns(patterns, detector.shape)
    q0 = np.asarray(quaternions, dtype=np.float64)
    if q0.shape != (len(x), 4):
        raise MatdiscoError(f"{len(q0)} initial orientations of shape {q0.shape[1:]} for "
                            f"{len(x)} patterns (need ({len(x)}, 4))")
    if not trust_region > 0:
        raise MatdiscoError(f"trust_region must be > 0 degrees, got {trust_region}")
    if len(x) == 1:  # kikuchipy cannot refine a single-point map: refine it twice
        qr, sr = refine_orientations(np.concatenate([x, x]), np.concatenate([q0, q0]),
                                     detector, trust_region)
        return qr[:1], sr[:1]
    s = to_ebsd_signal(x)
    ref = s.refine_orientation(crystal_map(q0), make_detector(detector), load_master_pattern(),
                               energy=detector.energy, trust_region=[trust_region] * 3,
                               compute=True)
    q = ref.rotations.data.reshape(-1, 4)
    return q, np.asarray(ref.prop["scores"]).ravel()


class DictionaryIndexer:
    """Dictionary indexing (normalized cross-correlation) with optional refinement.

    Parameters
    ----------
    dictionary_patterns : ndarray (m, rows, cols)
        Simulated dictionary patterns (e.g. from a cubochoric grid).
    dictionary_quaternions : ndarray (m, 4)
        Their orientations.
    detector : DetectorConfig, optional
        Detector used for the dictionary and for refinement.
    n_per_iteration : int
        Dictionary patterns compared per iteration (memory vs speed).
    resolution : float, optional
        Grid resolution (degrees) of the dictionary, for the records.
    """

    def __init__(self, dictionary_patterns: np.ndarray, dictionary_quaternions: np.ndarray,
                 detector: DetectorConfig | None = None, n_per_iteration: int = 2000,
                 resolution: float | None = None) -> None:
        from matdisco.ebsd.indexer import check_patterns

        self.detector = detector or DetectorConfig()
        self.dictionary_patterns = check_patterns(dictionary_patterns, self.detector.shape,
                                                  "dictionary patterns")
        q = np.asarray(dictionary_quaternions, dtype=np.float64)
        if q.shape != (len(self.dictionary_patterns), 4):
            raise MatdiscoError(f"dictionary quaternions must have shape "
                                f"({len(self.dictionary_patterns)}, 4), got {q.shape}")
        self.dictionary_quaternions = q
        self.n_per_iteration = n_per_iteration
        self.resolution = resolution

    def _dictionary_signal(self) -> Any:
        import kikuchipy as kp

        s = kp.signals.EBSD(self.dictionary_patterns.astype(np.float32),
                            xmap=crystal_map(self.dictionary_quaternions),
                            detector=make_detector(self.detector))
        return s

    def index(self, patterns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Best-matching dictionary orientation and NCC score of each pattern."""
        from matdisco.ebsd.indexer import check_patterns

        x = check_patterns(patterns, self.detector.shape)
        if len(x) == 1:  # kikuchipy needs a navigation axis of length > 1
            q, sc = self.index(np.concatenate([x, x]))
            return q[:1], sc[:1]
        s = to_ebsd_signal(x)
        xmap = s.dictionary_indexing(self._dictionary_signal(), metric="ncc", keep_n=1,
                                     n_per_iteration=min(self.n_per_iteration,
                                                         len(self.dictionary_patterns)))
        q = xmap.rotations.data.reshape(-1, 4)
        scores = np.asarray(xmap.prop["scores"]).reshape(len(x), -1)[:, 0]
        return q, scores

    def refine(self, patterns: np.ndarray, quaternions: np.ndarray,
               trust_region: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
        """Refine orientations with kikuchipy (SciPy Nelder-Mead on NCC, fixed PC).

        ``trust_region`` bounds each Euler angle to +/- this many degrees.
        """
        return refine_orientations(patterns, quaternions, self.detector, trust_region)

    def predict(self, patterns: np.ndarray, refine: bool = False) -> np.ndarray:
        """Orientations ``(n, 4)``; refined when ``refine`` is True."""
        q, _ = self.index(patterns)
        if refine:
            q, _ = self.refine(patterns, q)
        return q

    def timed_predict(self, patterns: np.ndarray) -> dict[str, Any]:
        """Index and refine, returning orientations and wall-clock seconds of both steps."""
        t0 = time.perf_counter()
        q, _ = self.index(patterns)
        t1 = time.perf_counter()
        qr, _ = self.refine(patterns, q)
        t2 = time.perf_counter()
        return {"dictionary": q, "dictionary_refined": qr, "seconds_index": t1 - t0,
                "seconds_refine": t2 - t1}
