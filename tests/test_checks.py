"""The public argument checks (``newtonkit.checks``) that the torch adapter uses."""

import numpy as np
import pytest

from newtonkit import checks


def test_real_range_and_type():
    assert checks.real(2, "lr", low=0.0, low_open=True) == 2.0
    with pytest.raises(ValueError, match="lr must be > 0"):
        checks.real(0.0, "lr", low=0.0, low_open=True)
    with pytest.raises(ValueError, match="truncation must be >= 0"):
        checks.real(-1e-9, "truncation", low=0.0)
    with pytest.raises(ValueError, match="x must be <= 1"):
        checks.real(1.5, "x", high=1.0)
    with pytest.raises(ValueError, match="must be finite"):
        checks.real(float("nan"), "x")
    with pytest.raises(TypeError, match="damping must be a real number"):
        checks.real(True, "damping")


def test_integer_and_choice():
    assert checks.integer(3.0, "max_trials", low=1) == 3
    assert checks.integer(None, "maxiter", optional=True) is None
    with pytest.raises(ValueError, match="max_trials must be >= 1"):
        checks.integer(0, "max_trials", low=1)
    with pytest.raises(ValueError, match="must be an integer"):
        checks.integer(2.5, "k")
    assert checks.choice("SVD", "route", ("svd", "gram")) == "svd"
    with pytest.raises(ValueError, match="unknown route 'qr'; choose one of svd, gram"):
        checks.choice("qr", "route", ("svd", "gram"))


def test_all_finite():
    xp = np
    a = np.ones(5)
    assert checks.all_finite(xp, a)
    b = a.copy()
    b[3] = np.inf
    assert not checks.all_finite(xp, b)
    assert np.isinf(b[3]) and np.all(a == 1)  # the input is not modified
