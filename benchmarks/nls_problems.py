"""Nonlinear least-squares test problems from the literature, with analytic Jacobians.

Every problem is a residual ``r: R^n -> R^m`` with its analytic Jacobian ``J(x)`` (dense
NumPy ``float64``, shape ``(m, n)``), the standard starting point ``x0`` and the minimum reported
in the literature.

Source
------
J. J. Moré, B. S. Garbow and K. E. Hillstrom, "Testing unconstrained optimization software",
ACM Trans. Math. Softw. 7(1):17-41, 1981, doi:10.1145/355934.355936 (below: MGH). Problem
numbers (``MGH #k``) and data follow that paper. Where MGH leave ``m`` or ``n`` free we use the
values stated on each problem (the ones for which MGH report a minimum, or, for the scalable
problems whose minimum is 0 or ``m - n`` for every size, the size we chose: n = 200 or 250).

Conventions
-----------
``F_star`` is the minimum **as MGH report it**, ``F = sum r_i**2`` (no 1/2), rounded to the
digits MGH print (six significant digits). NewtonKit and SciPy's ``least_squares`` ``cost`` use
``f = 0.5 * sum r_i**2``; :attr:`NLSProblem.f_star` is ``0.5 * F_star`` and :meth:`NLSProblem.cost`
returns ``f``. ``F_local`` lists the other minima MGH report (local minima, or infima at infinity)
for the same problem and sizes.

"Solved" criterion (on ``f = 0.5 ||r||^2``)::

    f <= f_star * (1 + RTOL) + ATOL,   RTOL = 1e-5,   ATOL = 1e-12

RTOL: MGH print six significant digits, so the printed value may lie below the true minimum by up
to half a unit in the sixth digit, i.e. up to 5e-6 relative (leading digit 1); 1e-5 covers that
with a factor-2 margin and is otherwise tight (a nonzero-residual run counted as solved is within
1e-5 relative of the optimal value). ATOL applies to the zero-residual problems (f_star = 0): it
asks for ||r|| <= 1.4e-6, which every solver here reaches on them when it converges (Newton-type
methods converge fast on zero-residual problems; on the singular ones, Powell singular, the
linear convergence still reaches it), and it is below every nonzero f_star in the set (the
smallest, Watson n = 9, has f_star = 7.0e-7). The status is ``"global"`` when ``f_star`` is met,
``"local"`` when one of ``F_local`` is met instead (same tolerances), else ``"failed"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

RTOL = 1e-5
ATOL = 1e-12

MGH = ("J. J. Moré, B. S. Garbow, K. E. Hillstrom, Testing unconstrained optimization software, "
       "ACM TOMS 7(1):17-41, 1981")


@dataclass(frozen=True)
class NLSProblem:
    """One nonlinear least-squares problem ``min_x 0.5 ||r(x)||^2``.

    Attributes
    ----------
    name : str
        Short name with its size, e.g. ``"ext_rosenbrock_200"``.
    n, m : int
        Number of variables and of residuals.
    residual : callable
        ``residual(x) -> r`` of shape ``(m,)``.
    jacobian : callable
        ``jacobian(x) -> J`` of shape ``(m, n)``, analytic.
    x0 : ndarray
        Standard starting point of the source.
    F_star : float
        Reported minimum of ``F = sum r_i**2`` (MGH convention, no 1/2).
    F_local : tuple of float
        Other reported minima (local, or infima at infinity) of ``F``.
    source : str
        Citation (paper and problem number).
    """

    name: str
    n: int
    m: int
    residual: Callable[[np.ndarray], np.ndarray]
    jacobian: Callable[[np.ndarray], np.ndarray]
    x0: np.ndarray
    F_star: float
    F_local: tuple[float, ...] = field(default=())
    source: str = ""

    @property
    def f_star(self) -> float:
        """Reported minimum in the ``0.5 ||r||^2`` convention."""
        return 0.5 * self.F_star

    def cost(self, x) -> float:
        """``0.5 ||r(x)||^2``."""
        r = self.residual(np.asarray(x, dtype=np.float64))
        return 0.5 * float(r @ r)

    def status(self, f: float) -> str:
        """``"global"``, ``"local"`` or ``"failed"`` for a final value ``f = 0.5 ||r||^2``."""
        if not np.isfinite(f):
            return "failed"
        if f <= self.f_star * (1.0 + RTOL) + ATOL:
            return "global"
        if any(f <= 0.5 * F * (1.0 + RTOL) + ATOL for F in self.F_local):
            return "local"
        return "failed"

    def solved(self, f: float) -> bool:
        """True when ``f`` reaches the reported minimum ``f_star`` (see module docstring)."""
        return self.status(f) == "global"


def _src(k: int, extra: str = "") -> str:
    return f"MGH #{k}" + (f"; {extra}" if extra else "")


# --------------------------------------------------------------------------------------------
# Fixed-size problems (MGH #1-#19)
# --------------------------------------------------------------------------------------------

def rosenbrock() -> NLSProblem:
    """Rosenbrock function, MGH #1 (n = m = 2); F* = 0 at (1, 1)."""
    def r(x):
        return np.array([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])

    def j(x):
        return np.array([[-20.0 * x[0], 10.0], [-1.0, 0.0]])

    return NLSProblem("rosenbrock", 2, 2, r, j, np.array([-1.2, 1.0]), 0.0, source=_src(1))


def freudenstein_roth() -> NLSProblem:
    """Freudenstein and Roth function, MGH #2 (n = m = 2).

    F* = 0 at (5, 4); local minimum F = 48.9842 at (11.41..., -0.8968...).
    """
    def r(x):
        x1, x2 = x
        return np.array([-13.0 + x1 + ((5.0 - x2) * x2 - 2.0) * x2,
                         -29.0 + x1 + ((x2 + 1.0) * x2 - 14.0) * x2])

    def j(x):
        x2 = x[1]
        return np.array([[1.0, (10.0 - 3.0 * x2) * x2 - 2.0],
                         [1.0, (3.0 * x2 + 2.0) * x2 - 14.0]])

    return NLSProblem("freudenstein_roth", 2, 2, r, j, np.array([0.5, -2.0]), 0.0,
                      (48.9842,), _src(2))


def powell_badly_scaled() -> NLSProblem:
    """Powell badly scaled function, MGH #3 (n = m = 2); F* = 0 at (1.098e-5, 9.106)."""
    def r(x):
        return np.array([1e4 * x[0] * x[1] - 1.0, np.exp(-x[0]) + np.exp(-x[1]) - 1.0001])

    def j(x):
        return np.array([[1e4 * x[1], 1e4 * x[0]], [-np.exp(-x[0]), -np.exp(-x[1])]])

    return NLSProblem("powell_badly_scaled", 2, 2, r, j, np.array([0.0, 1.0]), 0.0,
                      source=_src(3))


def brown_badly_scaled() -> NLSProblem:
    """Brown badly scaled function, MGH #4 (n = 2, m = 3); F* = 0 at (1e6, 2e-6)."""
    def r(x):
        return np.array([x[0] - 1e6, x[1] - 2e-6, x[0] * x[1] - 2.0])

    def j(x):
        return np.array([[1.0, 0.0], [0.0, 1.0], [x[1], x[0]]])

    return NLSProblem("brown_badly_scaled", 2, 3, r, j, np.array([1.0, 1.0]), 0.0,
                      source=_src(4))


def beale() -> NLSProblem:
    """Beale function, MGH #5 (n = 2, m = 3); F* = 0 at (3, 0.5)."""
    y = np.array([1.5, 2.25, 2.625])
    i = np.arange(1, 4, dtype=np.float64)

    def r(x):
        return y - x[0] * (1.0 - x[1] ** i)

    def j(x):
        return np.column_stack([-(1.0 - x[1] ** i), x[0] * i * x[1] ** (i - 1)])

    return NLSProblem("beale", 2, 3, r, j, np.array([1.0, 1.0]), 0.0, source=_src(5))


def jennrich_sampson(m: int = 10) -> NLSProblem:
    """Jennrich and Sampson function, MGH #6 (n = 2, m = 10); F* = 124.362 at x1 = x2 = 0.2578."""
    i = np.arange(1, m + 1, dtype=np.float64)

    def r(x):
        return 2.0 + 2.0 * i - (np.exp(i * x[0]) + np.exp(i * x[1]))

    def j(x):
        return np.column_stack([-i * np.exp(i * x[0]), -i * np.exp(i * x[1])])

    return NLSProblem("jennrich_sampson", 2, m, r, j, np.array([0.3, 0.4]), 124.362,
                      source=_src(6, "m = 10"))


def helical_valley() -> NLSProblem:
    """Helical valley function, MGH #7 (n = m = 3); F* = 0 at (1, 0, 0).

    theta = atan(x2/x1)/(2 pi) (+ 1/2 when x1 < 0; +-1/4 when x1 = 0, as in MINPACK).
    """
    tpi = 2.0 * np.pi

    def theta(x1, x2):
        if x1 > 0:
            return np.arctan(x2 / x1) / tpi
        if x1 < 0:
            return np.arctan(x2 / x1) / tpi + 0.5
        return 0.25 * np.sign(x2)

    def r(x):
        x1, x2, x3 = x
        return np.array([10.0 * (x3 - 10.0 * theta(x1, x2)),
                         10.0 * (np.hypot(x1, x2) - 1.0), x3])

    def j(x):
        x1, x2, _ = x
        s = x1 * x1 + x2 * x2
        rho = np.sqrt(s)
        return np.array([[100.0 * x2 / (tpi * s), -100.0 * x1 / (tpi * s), 10.0],
                         [10.0 * x1 / rho, 10.0 * x2 / rho, 0.0],
                         [0.0, 0.0, 1.0]])

    return NLSProblem("helical_valley", 3, 3, r, j, np.array([-1.0, 0.0, 0.0]), 0.0,
                      source=_src(7))


def bard() -> NLSProblem:
    """Bard function, MGH #8 (n = 3, m = 15).

    F* = 8.21487e-3; F = 17.4286 at (0.8406, -inf, -inf).
    """
    y = np.array([0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96, 1.34,
                  2.10, 4.39])
    u = np.arange(1, 16, dtype=np.float64)
    v = 16.0 - u
    w = np.minimum(u, v)

    def r(x):
        return y - (x[0] + u / (v * x[1] + w * x[2]))

    def j(x):
        d2 = (v * x[1] + w * x[2]) ** 2
        return np.column_stack([-np.ones(15), u * v / d2, u * w / d2])

    return NLSProblem("bard", 3, 15, r, j, np.array([1.0, 1.0, 1.0]), 8.21487e-3, (17.4286,),
                      _src(8))


def gaussian() -> NLSProblem:
    """Gaussian function, MGH #9 (n = 3, m = 15); F* = 1.12793e-8."""
    y = np.array([0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989, 0.3521,
                  0.2420, 0.1295, 0.0540, 0.0175, 0.0044, 0.0009])
    t = (8.0 - np.arange(1, 16)) / 2.0

    def r(x):
        return x[0] * np.exp(-0.5 * x[1] * (t - x[2]) ** 2) - y

    def j(x):
        d = t - x[2]
        e = np.exp(-0.5 * x[1] * d * d)
        return np.column_stack([e, -0.5 * x[0] * e * d * d, x[0] * x[1] * e * d])

    return NLSProblem("gaussian", 3, 15, r, j, np.array([0.4, 1.0, 0.0]), 1.12793e-8,
                      source=_src(9))


def meyer() -> NLSProblem:
    """Meyer function, MGH #10 (n = 3, m = 16); F* = 87.9458."""
    y = np.array([34780.0, 28610.0, 23650.0, 19630.0, 16370.0, 13720.0, 11540.0, 9744.0, 8261.0,
                  7030.0, 6005.0, 5147.0, 4427.0, 3820.0, 3307.0, 2872.0])
    t = 45.0 + 5.0 * np.arange(1, 17)

    def r(x):
        return x[0] * np.exp(x[1] / (t + x[2])) - y

    def j(x):
        d = t + x[2]
        e = np.exp(x[1] / d)
        return np.column_stack([e, x[0] * e / d, -x[0] * x[1] * e / (d * d)])

    return NLSProblem("meyer", 3, 16, r, j, np.array([0.02, 4000.0, 250.0]), 87.9458,
                      source=_src(10))


def gulf(m: int = 99) -> NLSProblem:
    """Gulf research and development function, MGH #11 (n = 3, m = 99); F* = 0 at (50, 25, 1.5).

    r_i = exp(-|y_i - x2|**x3 / x1) - t_i, t_i = i/100, y_i = 25 + (-50 ln t_i)**(2/3).
    """
    t = np.arange(1, m + 1) / 100.0
    y = 25.0 + (-50.0 * np.log(t)) ** (2.0 / 3.0)

    def r(x):
        a = np.abs(y - x[1])
        return np.exp(-(a ** x[2]) / x[0]) - t

    def j(x):
        d = y - x[1]
        a = np.abs(d)
        p = a ** x[2]
        e = np.exp(-p / x[0])
        with np.errstate(divide="ignore", invalid="ignore"):
            loga = np.where(a > 0, np.log(np.where(a > 0, a, 1.0)), 0.0)
            da = np.where(a > 0, x[2] * a ** (x[2] - 1.0), 0.0)
        return np.column_stack([e * p / x[0] ** 2, e * da * np.sign(d) / x[0],
                                -e * p * loga / x[0]])

    return NLSProblem("gulf", 3, m, r, j, np.array([5.0, 2.5, 0.15]), 0.0,
                      source=_src(11, f"m = {m}"))


def box3d(m: int = 10) -> NLSProblem:
    """Box three-dimensional function, MGH #12 (n = 3, m = 10); F* = 0 (e.g. at (1, 10, 1))."""
    t = 0.1 * np.arange(1, m + 1)
    c = np.exp(-t) - np.exp(-10.0 * t)

    def r(x):
        return np.exp(-t * x[0]) - np.exp(-t * x[1]) - x[2] * c

    def j(x):
        return np.column_stack([-t * np.exp(-t * x[0]), t * np.exp(-t * x[1]), -c])

    return NLSProblem("box3d", 3, m, r, j, np.array([0.0, 10.0, 20.0]), 0.0,
                      source=_src(12, f"m = {m}"))


def powell_singular() -> NLSProblem:
    """Powell singular function, MGH #13 (n = m = 4); F* = 0 at the origin (J singular there)."""
    s5, s10 = np.sqrt(5.0), np.sqrt(10.0)

    def r(x):
        return np.array([x[0] + 10.0 * x[1], s5 * (x[2] - x[3]), (x[1] - 2.0 * x[2]) ** 2,
                         s10 * (x[0] - x[3]) ** 2])

    def j(x):
        a = 2.0 * (x[1] - 2.0 * x[2])
        b = 2.0 * s10 * (x[0] - x[3])
        return np.array([[1.0, 10.0, 0.0, 0.0], [0.0, 0.0, s5, -s5], [0.0, a, -2.0 * a, 0.0],
                         [b, 0.0, 0.0, -b]])

    return NLSProblem("powell_singular", 4, 4, r, j, np.array([3.0, -1.0, 0.0, 1.0]), 0.0,
                      source=_src(13))


def wood() -> NLSProblem:
    """Wood function, MGH #14 (n = 4, m = 6); F* = 0 at (1, 1, 1, 1)."""
    s90, s10 = np.sqrt(90.0), np.sqrt(10.0)

    def r(x):
        x1, x2, x3, x4 = x
        return np.array([10.0 * (x2 - x1 ** 2), 1.0 - x1, s90 * (x4 - x3 ** 2), 1.0 - x3,
                         s10 * (x2 + x4 - 2.0), (x2 - x4) / s10])

    def j(x):
        x1, _, x3, _ = x
        return np.array([[-20.0 * x1, 10.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0],
                         [0.0, 0.0, -2.0 * s90 * x3, s90], [0.0, 0.0, -1.0, 0.0],
                         [0.0, s10, 0.0, s10], [0.0, 1.0 / s10, 0.0, -1.0 / s10]])

    return NLSProblem("wood", 4, 6, r, j, np.array([-3.0, -1.0, -3.0, -1.0]), 0.0,
                      source=_src(14))


def kowalik_osborne() -> NLSProblem:
    """Kowalik and Osborne function, MGH #15 (n = 4, m = 11).

    F* = 3.07505e-4; F = 1.02734e-3 at (+inf, -14.07, -inf, -inf).
    """
    y = np.array([0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323,
                  0.0235, 0.0246])
    u = np.array([4.0, 2.0, 1.0, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625])

    def r(x):
        return y - x[0] * (u * u + u * x[1]) / (u * u + u * x[2] + x[3])

    def j(x):
        num = u * u + u * x[1]
        den = u * u + u * x[2] + x[3]
        q = x[0] * num / (den * den)
        return np.column_stack([-num / den, -x[0] * u / den, q * u, q])

    return NLSProblem("kowalik_osborne", 4, 11, r, j, np.array([0.25, 0.39, 0.415, 0.39]),
                      3.07505e-4, (1.02734e-3,), _src(15))


def brown_dennis(m: int = 20) -> NLSProblem:
    """Brown and Dennis function, MGH #16 (n = 4, m = 20); F* = 85822.2."""
    t = np.arange(1, m + 1) / 5.0
    st, ct, et = np.sin(t), np.cos(t), np.exp(t)

    def r(x):
        a = x[0] + t * x[1] - et
        b = x[2] + x[3] * st - ct
        return a * a + b * b

    def j(x):
        a = x[0] + t * x[1] - et
        b = x[2] + x[3] * st - ct
        return np.column_stack([2.0 * a, 2.0 * a * t, 2.0 * b, 2.0 * b * st])

    return NLSProblem("brown_dennis", 4, m, r, j, np.array([25.0, 5.0, -5.0, -1.0]), 85822.2,
                      source=_src(16, f"m = {m}"))


def osborne1() -> NLSProblem:
    """Osborne 1 function, MGH #17 (n = 5, m = 33); F* = 5.46489e-5."""
    y = np.array([0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784, 0.751,
                  0.718, 0.685, 0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522, 0.506, 0.490,
                  0.478, 0.467, 0.457, 0.448, 0.438, 0.431, 0.424, 0.420, 0.414, 0.411, 0.406])
    t = 10.0 * np.arange(33)

    def r(x):
        return y - (x[0] + x[1] * np.exp(-t * x[3]) + x[2] * np.exp(-t * x[4]))

    def j(x):
        e4, e5 = np.exp(-t * x[3]), np.exp(-t * x[4])
        return np.column_stack([-np.ones(33), -e4, -e5, x[1] * t * e4, x[2] * t * e5])

    return NLSProblem("osborne1", 5, 33, r, j, np.array([0.5, 1.5, -1.0, 0.01, 0.02]),
                      5.46489e-5, source=_src(17))


def biggs_exp6(m: int = 13) -> NLSProblem:
    """Biggs EXP6 function, MGH #18 (n = 6, m = 13).

    F* = 0 at (1, 10, 1, 5, 4, 3); local minimum F = 5.65565e-3 (m = 13).
    """
    t = 0.1 * np.arange(1, m + 1)
    y = np.exp(-t) - 5.0 * np.exp(-10.0 * t) + 3.0 * np.exp(-4.0 * t)

    def r(x):
        return (x[2] * np.exp(-t * x[0]) - x[3] * np.exp(-t * x[1]) + x[5] * np.exp(-t * x[4])
                - y)

    def j(x):
        e1, e2, e5 = np.exp(-t * x[0]), np.exp(-t * x[1]), np.exp(-t * x[4])
        return np.column_stack([-t * x[2] * e1, t * x[3] * e2, e1, -e2, -t * x[5] * e5, e5])

    return NLSProblem("biggs_exp6", 6, m, r, j, np.array([1.0, 2.0, 1.0, 1.0, 1.0, 1.0]), 0.0,
                      (5.65565e-3,), _src(18, f"m = {m}"))


def osborne2() -> NLSProblem:
    """Osborne 2 function, MGH #19 (n = 11, m = 65); F* = 4.01377e-2."""
    y = np.array([
        1.366, 1.191, 1.112, 1.013, 0.991, 0.885, 0.831, 0.847, 0.786, 0.725, 0.746, 0.679,
        0.608, 0.655, 0.616, 0.606, 0.602, 0.626, 0.651, 0.724, 0.649, 0.649, 0.694, 0.644,
        0.624, 0.661, 0.612, 0.558, 0.533, 0.495, 0.500, 0.423, 0.395, 0.375, 0.372, 0.391,
        0.396, 0.405, 0.428, 0.429, 0.523, 0.562, 0.607, 0.653, 0.672, 0.708, 0.633, 0.668,
        0.645, 0.632, 0.591, 0.559, 0.597, 0.625, 0.739, 0.710, 0.729, 0.720, 0.636, 0.581,
        0.428, 0.292, 0.162, 0.098, 0.054])
    t = np.arange(65) / 10.0

    def parts(x):
        d = [t - x[8], t - x[9], t - x[10]]
        e = [np.exp(-t * x[4])] + [np.exp(-d[k] ** 2 * x[5 + k]) for k in range(3)]
        return d, e

    def r(x):
        _, e = parts(x)
        return y - (x[0] * e[0] + x[1] * e[1] + x[2] * e[2] + x[3] * e[3])

    def j(x):
        d, e = parts(x)
        cols = [-e[0], -e[1], -e[2], -e[3], x[0] * t * e[0]]
        cols += [x[1 + k] * d[k] ** 2 * e[1 + k] for k in range(3)]
        cols += [-2.0 * x[1 + k] * x[5 + k] * d[k] * e[1 + k] for k in range(3)]
        return np.column_stack(cols)

    x0 = np.array([1.3, 0.65, 0.65, 0.7, 0.6, 3.0, 5.0, 7.0, 2.0, 4.5, 5.5])
    return NLSProblem("osborne2", 11, 65, r, j, x0, 4.01377e-2, source=_src(19))


# --------------------------------------------------------------------------------------------
# Variable-size problems (MGH #20-#35)
# --------------------------------------------------------------------------------------------

_WATSON_F = {6: 2.28767e-3, 9: 1.39976e-6, 12: 4.72238e-10}


def watson(n: int = 9) -> NLSProblem:
    """Watson function, MGH #20 (m = 31); F* = 2.28767e-3 (n=6), 1.39976e-6 (n=9), 4.72238e-10
    (n=12)."""
    t = np.arange(1, 30) / 29.0
    p = np.arange(n)
    tp = t[:, None] ** p[None, :]                       # t^(j-1), j = 1..n
    dtp = np.zeros_like(tp)
    dtp[:, 1:] = p[1:] * t[:, None] ** (p[1:] - 1)      # (j-1) t^(j-2)

    def r(x):
        s2 = tp @ x
        out = np.empty(31)
        out[:29] = dtp @ x - s2 * s2 - 1.0
        out[29] = x[0]
        out[30] = x[1] - x[0] ** 2 - 1.0
        return out

    def j(x):
        s2 = tp @ x
        out = np.zeros((31, n))
        out[:29] = dtp - 2.0 * s2[:, None] * tp
        out[29, 0] = 1.0
        out[30, 0] = -2.0 * x[0]
        out[30, 1] = 1.0
        return out

    return NLSProblem(f"watson_{n}", n, 31, r, j, np.zeros(n), _WATSON_F[n],
                      source=_src(20, f"n = {n}"))


def extended_rosenbrock(n: int = 200) -> NLSProblem:
    """Extended Rosenbrock function, MGH #21 (m = n even); F* = 0 at (1, ..., 1)."""
    if n % 2:
        raise ValueError("n must be even")
    k = np.arange(n // 2)

    def r(x):
        out = np.empty(n)
        out[0::2] = 10.0 * (x[1::2] - x[0::2] ** 2)
        out[1::2] = 1.0 - x[0::2]
        return out

    def j(x):
        out = np.zeros((n, n))
        out[2 * k, 2 * k] = -20.0 * x[0::2]
        out[2 * k, 2 * k + 1] = 10.0
        out[2 * k + 1, 2 * k] = -1.0
        return out

    x0 = np.tile([-1.2, 1.0], n // 2)
    return NLSProblem(f"ext_rosenbrock_{n}", n, n, r, j, x0, 0.0, source=_src(21, f"n = {n}"))


def extended_powell_singular(n: int = 200) -> NLSProblem:
    """Extended Powell singular function, MGH #22 (m = n, multiple of 4); F* = 0 at the origin."""
    if n % 4:
        raise ValueError("n must be a multiple of 4")
    s5, s10 = np.sqrt(5.0), np.sqrt(10.0)
    b = 4 * np.arange(n // 4)

    def r(x):
        x1, x2, x3, x4 = x[0::4], x[1::4], x[2::4], x[3::4]
        out = np.empty(n)
        out[0::4] = x1 + 10.0 * x2
        out[1::4] = s5 * (x3 - x4)
        out[2::4] = (x2 - 2.0 * x3) ** 2
        out[3::4] = s10 * (x1 - x4) ** 2
        return out

    def j(x):
        x1, x2, x3, x4 = x[0::4], x[1::4], x[2::4], x[3::4]
        a = 2.0 * (x2 - 2.0 * x3)
        c = 2.0 * s10 * (x1 - x4)
        out = np.zeros((n, n))
        out[b, b] = 1.0
        out[b, b + 1] = 10.0
        out[b + 1, b + 2] = s5
        out[b + 1, b + 3] = -s5
        out[b + 2, b + 1] = a
        out[b + 2, b + 2] = -2.0 * a
        out[b + 3, b] = c
        out[b + 3, b + 3] = -c
        return out

    x0 = np.tile([3.0, -1.0, 0.0, 1.0], n // 4)
    return NLSProblem(f"ext_powell_singular_{n}", n, n, r, j, x0, 0.0,
                      source=_src(22, f"n = {n}"))


_PENALTY1_F = {4: 2.24997e-5, 10: 7.08765e-5}


def penalty1(n: int = 10) -> NLSProblem:
    """Penalty function I, MGH #23 (m = n + 1); F* = 2.24997e-5 (n=4), 7.08765e-5 (n=10)."""
    sa = np.sqrt(1e-5)

    def r(x):
        return np.concatenate([sa * (x - 1.0), [x @ x - 0.25]])

    def j(x):
        return np.vstack([sa * np.eye(n), 2.0 * x[None, :]])

    return NLSProblem(f"penalty1_{n}", n, n + 1, r, j, np.arange(1.0, n + 1), _PENALTY1_F[n],
                      source=_src(23, f"n = {n}"))


_PENALTY2_F = {4: 9.37629e-6, 10: 2.93660e-4}


def penalty2(n: int = 10) -> NLSProblem:
    """Penalty function II, MGH #24 (m = 2n); F* = 9.37629e-6 (n=4), 2.93660e-4 (n=10)."""
    sa = np.sqrt(1e-5)
    i = np.arange(2, n + 1)
    y = np.exp(i / 10.0) + np.exp((i - 1) / 10.0)
    wgt = np.arange(n, 0, -1, dtype=np.float64)        # n - j + 1
    em1 = np.exp(-0.1)

    def r(x):
        e = np.exp(x / 10.0)
        return np.concatenate([[x[0] - 0.2], sa * (e[1:] + e[:-1] - y), sa * (e[1:] - em1),
                               [wgt @ (x * x) - 1.0]])

    def j(x):
        e = np.exp(x / 10.0) / 10.0
        out = np.zeros((2 * n, n))
        out[0, 0] = 1.0
        k = np.arange(n - 1)
        out[1 + k, k + 1] = sa * e[1:]
        out[1 + k, k] = sa * e[:-1]
        out[n + k, k + 1] = sa * e[1:]
        out[2 * n - 1] = 2.0 * wgt * x
        return out

    return NLSProblem(f"penalty2_{n}", n, 2 * n, r, j, np.full(n, 0.5), _PENALTY2_F[n],
                      source=_src(24, f"n = {n}"))


def variably_dimensioned(n: int = 10) -> NLSProblem:
    """Variably dimensioned function, MGH #25 (m = n + 2); F* = 0 at (1, ..., 1)."""
    jj = np.arange(1, n + 1, dtype=np.float64)

    def r(x):
        s = jj @ (x - 1.0)
        return np.concatenate([x - 1.0, [s, s * s]])

    def j(x):
        s = jj @ (x - 1.0)
        return np.vstack([np.eye(n), jj[None, :], 2.0 * s * jj[None, :]])

    return NLSProblem(f"variably_dimensioned_{n}", n, n + 2, r, j, 1.0 - jj / n, 0.0,
                      source=_src(25, f"n = {n}"))


def trigonometric(n: int = 10) -> NLSProblem:
    """Trigonometric function, MGH #26 (m = n); F* = 0.

    For n = 10 the standard start leads Newton-type methods to a local minimum with
    F = 2.79506e-5 (observed here; MGH list only F* = 0), so this problem counts as unsolved.
    """
    i = np.arange(1, n + 1, dtype=np.float64)

    def r(x):
        return n - np.sum(np.cos(x)) + i * (1.0 - np.cos(x)) - np.sin(x)

    def j(x):
        out = np.tile(np.sin(x), (n, 1))
        out[np.diag_indices(n)] += i * np.sin(x) - np.cos(x)
        return out

    return NLSProblem(f"trigonometric_{n}", n, n, r, j, np.full(n, 1.0 / n), 0.0,
                      source=_src(26, f"n = {n}"))


def brown_almost_linear(n: int = 10) -> NLSProblem:
    """Brown almost-linear function, MGH #27 (m = n).

    F* = 0 at (a, ..., a, a**(1-n)) with n a**n - (n+1) a**(n-1) + 1 = 0; F = 1 at (0, ..., 0,
    n+1).
    """
    def r(x):
        out = x + np.sum(x) - (n + 1.0)
        out[-1] = np.prod(x) - 1.0
        return out

    def j(x):
        out = np.ones((n, n)) + np.eye(n)
        # product of all entries but x_k, without dividing by x_k
        left = np.concatenate([[1.0], np.cumprod(x[:-1])])
        right = np.concatenate([np.cumprod(x[::-1][:-1])[::-1], [1.0]])
        out[-1] = left * right
        return out

    return NLSProblem(f"brown_almost_linear_{n}", n, n, r, j, np.full(n, 0.5), 0.0, (1.0,),
                      _src(27, f"n = {n}"))


def discrete_boundary_value(n: int = 200) -> NLSProblem:
    """Discrete boundary value function, MGH #28 (m = n); F* = 0."""
    h = 1.0 / (n + 1)
    t = h * np.arange(1, n + 1)
    idx = np.arange(n)

    def r(x):
        xp = np.concatenate([[0.0], x, [0.0]])
        return 2.0 * x - xp[:-2] - xp[2:] + 0.5 * h * h * (x + t + 1.0) ** 3

    def j(x):
        out = np.zeros((n, n))
        out[idx, idx] = 2.0 + 1.5 * h * h * (x + t + 1.0) ** 2
        out[idx[1:], idx[:-1]] = -1.0
        out[idx[:-1], idx[1:]] = -1.0
        return out

    return NLSProblem(f"discrete_bv_{n}", n, n, r, j, t * (t - 1.0), 0.0,
                      source=_src(28, f"n = {n}"))


def discrete_integral_equation(n: int = 200) -> NLSProblem:
    """Discrete integral equation function, MGH #29 (m = n); F* = 0."""
    h = 1.0 / (n + 1)
    t = h * np.arange(1, n + 1)
    lower = np.tril(np.ones((n, n)))                  # j <= i
    kern = 0.5 * h * (lower * np.outer(1.0 - t, t) + (1.0 - lower) * np.outer(t, 1.0 - t))

    def r(x):
        return x + kern @ (x + t + 1.0) ** 3

    def j(x):
        return np.eye(n) + kern * (3.0 * (x + t + 1.0) ** 2)[None, :]

    return NLSProblem(f"discrete_integral_{n}", n, n, r, j, t * (t - 1.0), 0.0,
                      source=_src(29, f"n = {n}"))


def broyden_tridiagonal(n: int = 250) -> NLSProblem:
    """Broyden tridiagonal function, MGH #30 (m = n); F* = 0."""
    idx = np.arange(n)

    def r(x):
        xp = np.concatenate([[0.0], x, [0.0]])
        return (3.0 - 2.0 * x) * x - xp[:-2] - 2.0 * xp[2:] + 1.0

    def j(x):
        out = np.zeros((n, n))
        out[idx, idx] = 3.0 - 4.0 * x
        out[idx[1:], idx[:-1]] = -1.0
        out[idx[:-1], idx[1:]] = -2.0
        return out

    return NLSProblem(f"broyden_tridiagonal_{n}", n, n, r, j, -np.ones(n), 0.0,
                      source=_src(30, f"n = {n}"))


def broyden_banded(n: int = 200, ml: int = 5, mu: int = 1) -> NLSProblem:
    """Broyden banded function, MGH #31 (m = n, ml = 5, mu = 1); F* = 0."""
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    band = ((jj >= ii - ml) & (jj <= ii + mu) & (jj != ii)).astype(np.float64)

    def r(x):
        return x * (2.0 + 5.0 * x * x) + 1.0 - band @ (x * (1.0 + x))

    def j(x):
        out = -band * (1.0 + 2.0 * x)[None, :]
        out[np.diag_indices(n)] = 2.0 + 15.0 * x * x
        return out

    return NLSProblem(f"broyden_banded_{n}", n, n, r, j, -np.ones(n), 0.0,
                      source=_src(31, f"n = {n}, ml = {ml}, mu = {mu}"))


def linear_full_rank(n: int = 200, m: int = 400) -> NLSProblem:
    """Linear function - full rank, MGH #32 (m >= n); F* = m - n at (-1, ..., -1)."""
    a = np.vstack([np.eye(n), np.zeros((m - n, n))]) - 2.0 / m

    def r(x):
        return a @ x - 1.0

    def j(x):
        return a.copy()

    return NLSProblem(f"linear_full_rank_{n}", n, m, r, j, np.ones(n), float(m - n),
                      source=_src(32, f"n = {n}, m = {m}"))


def linear_rank1(n: int = 5, m: int = 10) -> NLSProblem:
    """Linear function - rank 1, MGH #33 (m >= n); F* = m(m-1) / (2(2m+1))."""
    a = np.outer(np.arange(1.0, m + 1), np.arange(1.0, n + 1))

    def r(x):
        return a @ x - 1.0

    def j(x):
        return a.copy()

    return NLSProblem(f"linear_rank1_{n}", n, m, r, j, np.ones(n),
                      m * (m - 1) / (2.0 * (2 * m + 1)), source=_src(33, f"n = {n}, m = {m}"))


def linear_rank1_zero(n: int = 5, m: int = 10) -> NLSProblem:
    """Linear function - rank 1 with zero columns and rows, MGH #34 (m >= n);
    F* = (m**2 + 3m - 6) / (2(2m - 3))."""
    a = np.zeros((m, n))
    a[1:m - 1, 1:n - 1] = np.outer(np.arange(1.0, m - 1), np.arange(2.0, n))

    def r(x):
        return a @ x - 1.0

    def j(x):
        return a.copy()

    return NLSProblem(f"linear_rank1_zero_{n}", n, m, r, j, np.ones(n),
                      (m * m + 3 * m - 6) / (2.0 * (2 * m - 3)),
                      source=_src(34, f"n = {n}, m = {m}"))


_CHEBYQUAD_F = {7: 0.0, 8: 3.51687e-3, 9: 0.0, 10: 6.50395e-3}


def chebyquad(n: int = 8) -> NLSProblem:
    """Chebyquad function, MGH #35 (m = n); F* = 0 (n = 7, 9), 3.51687e-3 (n = 8),
    6.50395e-3 (n = 10)."""
    m = n
    k = np.arange(1, m + 1)
    integ = np.zeros(m)
    even = k % 2 == 0
    integ[even] = -1.0 / (k[even] ** 2 - 1.0)       # integral of T_k(2x-1) over [0, 1]

    def cheb(x):
        y = 2.0 * x - 1.0
        tk = np.empty((m + 1, n))
        dk = np.empty((m + 1, n))       # d T_k(2x-1) / dx
        tk[0], dk[0] = 1.0, 0.0
        tk[1], dk[1] = y, 2.0
        for i in range(1, m):
            tk[i + 1] = 2.0 * y * tk[i] - tk[i - 1]
            dk[i + 1] = 4.0 * tk[i] + 2.0 * y * dk[i] - dk[i - 1]
        return tk[1:], dk[1:]

    def r(x):
        tk, _ = cheb(x)
        return tk.mean(axis=1) - integ

    def j(x):
        _, dk = cheb(x)
        return dk / n

    return NLSProblem(f"chebyquad_{n}", n, m, r, j, np.arange(1, n + 1) / (n + 1.0),
                      _CHEBYQUAD_F[n], source=_src(35, f"n = m = {n}"))


# --------------------------------------------------------------------------------------------

def all_problems() -> list[NLSProblem]:
    """The benchmark set, ordered by size (n from 2 to 250)."""
    probs = [
        rosenbrock(), freudenstein_roth(), powell_badly_scaled(), brown_badly_scaled(), beale(),
        jennrich_sampson(), helical_valley(), bard(), gaussian(), meyer(), gulf(), box3d(),
        powell_singular(), wood(), kowalik_osborne(), brown_dennis(), osborne1(), biggs_exp6(),
        linear_rank1(), linear_rank1_zero(), watson(6), watson(9), chebyquad(8), penalty1(10),
        penalty2(10), variably_dimensioned(10), trigonometric(10), brown_almost_linear(10),
        osborne2(), discrete_boundary_value(10),
        extended_rosenbrock(200), extended_powell_singular(200), discrete_boundary_value(200),
        discrete_integral_equation(200), broyden_tridiagonal(250), broyden_banded(200),
        linear_full_rank(200, 400), variably_dimensioned(200),
    ]
    return sorted(probs, key=lambda p: p.n)


def get(name: str) -> NLSProblem:
    """Problem by name."""
    for p in all_problems():
        if p.name == name:
            return p
    raise KeyError(f"unknown problem {name!r}")
