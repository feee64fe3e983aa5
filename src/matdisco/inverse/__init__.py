"""Inverse design: find all inputs ``x`` with ``f(x) ~= y*``.

One interface (:class:`InverseSolver`: ``fit(X, Y)``, ``propose(y_star, n)``) over the
established methods -- neural adjoint, tandem, mixture of tandems, INN, cINN, cVAE,
MDN -- and iPage, evaluated by re-simulating proposals with the true forward model of
benchmark tasks (sinewave, robotic arm, ballistics, architected material via periodic
FE homogenization, and MoS2 band gap with an oracle surrogate).

Example
-------
>>> from matdisco.inverse import get_task, get_solver
>>> task = get_task("sinewave")
>>> X, Y = task.dataset(10_000)
>>> solver = get_solver("ipage_mlhs", bounds=(task.lower, task.upper)).fit(X, Y)
>>> x = solver.propose(1.2, n=25)          # 25 inputs with f(x) ~= 1.2
"""

from __future__ import annotations

from typing import Any

from matdisco import MatdiscoError
from matdisco.inverse.adjoint import MixtureTandem, NeuralAdjoint, Tandem, gradient_search
from matdisco.inverse.base import InverseSolver, TargetRangeWarning
from matdisco.inverse.evaluation import (
    mode_coverage,
    r_t_curve,
    resimulation_errors,
    sinewave_modes,
    single_target,
)
from matdisco.inverse.flows import CINN, INN, IPage, latent_samples
from matdisco.inverse.generative import CVAE, MDN
from matdisco.inverse.tasks import (
    TASKS,
    Architecture,
    Ballistics,
    InverseTask,
    MoS2Bandgap,
    RoboticArm,
    Sinewave,
    get_task,
)

METHODS = ("na", "tandem", "mixture_tandem_k1", "mixture_tandem_k2", "mixture_tandem_k3",
           "mixture_tandem_k4", "inn", "cinn", "cvae", "mdn", "ipage_srs", "ipage_lhs",
           "ipage_mlhs")


def get_solver(name: str, **kwargs: Any) -> InverseSolver:
    """Build a solver by its benchmark name (see :data:`METHODS`)."""
    key = str(name).lower()
    if key == "na":
        return NeuralAdjoint(**kwargs)
    if key == "tandem":
        return Tandem(**kwargs)
    if key.startswith("mixture_tandem_k") and key[16:].isdigit() and 1 <= int(key[16:]) <= 8:
        return MixtureTandem(k=int(key[16:]), **kwargs)
    if key == "inn":
        return INN(**kwargs)
    if key == "cinn":
        return CINN(**kwargs)
    if key == "cvae":
        return CVAE(**kwargs)
    if key == "mdn":
        return MDN(**kwargs)
    if key in ("ipage_srs", "ipage_lhs", "ipage_mlhs"):
        return IPage(sampler=key[6:], **kwargs)
    raise MatdiscoError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")


def __getattr__(name: str) -> Any:
    """The benchmark and run functions (:mod:`matdisco.inverse.bench` imports this module,
    so they are loaded on first use): ``propose_run``, ``run_benchmark``."""
    if name in ("propose_run", "run_benchmark"):
        from matdisco.inverse import bench

        return getattr(bench, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CINN", "CVAE", "INN", "MDN", "METHODS", "TASKS", "Architecture", "Ballistics", "IPage",
    "propose_run", "run_benchmark",
    "InverseSolver", "InverseTask", "MixtureTandem", "MoS2Bandgap", "NeuralAdjoint",
    "RoboticArm", "Sinewave", "Tandem", "TargetRangeWarning", "get_solver", "get_task",
    "gradient_search", "latent_samples", "mode_coverage", "r_t_curve",
    "resimulation_errors", "single_target", "sinewave_modes",
]
