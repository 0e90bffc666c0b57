"""A step the line search shortened is no evidence of convergence (GN and HIG).

Before, Gauss-Newton and HIG with a line search applied the ftol/xtol tests to every accepted
step, so a step the search had cut to a sliver (|f_k − f_{k+1}| and ‖Δx‖ tiny because t was)
ended the run with success far from any stationary point.
"""

import numpy as np
import pytest

import newtonkit as nk


def freudenstein_roth(x):
    return np.array([-13.0 + x[0] + ((5.0 - x[1]) * x[1] - 2.0) * x[1],
                     -29.0 + x[0] + ((x[1] + 1.0) * x[1] - 14.0) * x[1]])


def freudenstein_roth_jac(x):
    return np.array([[1.0, 10.0 * x[1] - 3.0 * x[1] ** 2 - 2.0],
                     [1.0, 3.0 * x[1] ** 2 + 2.0 * x[1] - 14.0]])


def powell_badly_scaled(x):
    return np.array([1e4 * x[0] * x[1] - 1.0, np.exp(-x[0]) + np.exp(-x[1]) - 1.0001])


def powell_badly_scaled_jac(x):
    return np.array([[1e4 * x[1], 1e4 * x[0]], [-np.exp(-x[0]), -np.exp(-x[1])]])


@pytest.mark.parametrize("method, fun, jac, x0", [
    # GN stalls in Freudenstein-Roth's valley at ½‖r‖² ≈ 29 with ‖∇f‖∞ ≈ 57 (the local minimum
    # is at 24.49): it reported FTOL success there
    ("gn", freudenstein_roth, freudenstein_roth_jac, [0.5, -2.0]),
    # HIG with Armijo steps creeps along Powell's badly scaled valley: it reported XTOL success
    # at ½‖r‖² ≈ 5.7e-4 (the minimum is 0) after steps shortened to t = 0.01
    ("hig", powell_badly_scaled, powell_badly_scaled_jac, [0.0, 1.0]),
])
def test_a_shortened_step_is_not_convergence(method, fun, jac, x0):
    res = nk.minimize(fun, np.array(x0), method=method, jac=jac,
                      options={"line_search": True, "maxiter": 2000})
    g = jac(res.x).T @ fun(res.x)
    # the point is not stationary: the scaled gradient (the largest cosine between r and a
    # column of J) is far above gtol = 1e-8 ...
    cosines = np.abs(g) / (np.linalg.norm(jac(res.x), axis=0) * np.linalg.norm(fun(res.x)))
    assert cosines.max() > 1e-3
    # ... so the run must not claim success; it ends when the search changes f only in its
    # last bits
    assert res.termination == "NO_PROGRESS", res.message


def test_a_full_step_still_meets_ftol():
    # GN's full steps converge on a small-residual exponential fit; with the gradient test
    # and the full-step xtol test switched off (gtol = xtol = 0) the ftol test after a full
    # step ends the run, as before
    t = np.linspace(0.0, 1.0, 20)
    y = 2.0 * np.exp(-1.5 * t) + 1e-3 * np.sin(7 * t)  # a small misfit: f* > 0

    def r(p):
        return p[0] * np.exp(-p[1] * t) - y

    def J(p):
        e = np.exp(-p[1] * t)
        return np.stack([e, -p[0] * t * e], axis=1)

    res = nk.minimize(r, np.array([1.0, 1.0]), method="gn", jac=J,
                      options={"gtol": 0.0, "xtol": 0.0})
    assert res.termination == "FTOL", res.message
