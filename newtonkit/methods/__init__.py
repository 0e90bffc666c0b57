"""Optimisation methods, one per file, registered by name (see :mod:`._base`)."""

from ._base import METHODS, Method, State, lookup
from .gauss_newton import GaussNewton
from .hig import HIG
from .levenberg_marquardt import LevenbergMarquardt
from .newton import Newton
from .trf import TrustRegionReflective

__all__ = ["METHODS", "Method", "State", "lookup", "Newton", "GaussNewton",
           "LevenbergMarquardt", "HIG", "TrustRegionReflective"]
