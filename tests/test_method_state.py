"""Explicit state: a method's ``step`` builds the next state and leaves the one it was given as
it was (DESIGN: states passed in and out; a method instance keeps only settings)."""

import dataclasses

import numpy as np
import pytest
from scipy.optimize import rosen, rosen_der, rosen_hess

import newtonkit as nk
from newtonkit.methods import METHODS
from newtonkit.methods.newton import ProjectedNewton

A = np.array([[2.0, 1.0], [1.0, 3.0], [0.5, -1.0], [1.0, 1.0]])


def residual(x):
    return np.array([10 * (x[1] - x[0] ** 2), 1 - x[0], 0.1 * x[0] * x[1], x[1] - 0.5])


def jacobian(x):
    return np.array([[-20 * x[0], 10.0], [-1.0, 0.0], [0.1 * x[1], 0.1 * x[0]], [0.0, 1.0]])


def _fields(data):
    if dataclasses.is_dataclass(data):
        return {f.name: getattr(data, f.name) for f in dataclasses.fields(data)}
    if hasattr(data, "_asdict"):  # a NamedTuple (LMData)
        return data._asdict()
    return dict(data)


def _snapshot(state):
    """Everything a step could change in place: the state's attributes, the identity of each
    data entry, and the length of any list among them (an in-place append)."""
    data = _fields(state.data)
    return (state.x.copy(), state.f, None if state.g is None else state.g.copy(), state.accepted,
            state.stop, dict(state.info), dict(state.details), id(state.data),
            {k: (id(v), len(v) if isinstance(v, list) else None) for k, v in data.items()})


def _same(a, b):
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert (a[2] is None) == (b[2] is None) and (a[2] is None or np.array_equal(a[2], b[2]))
    assert a[3:] == b[3:]


CASES = [
    ("newton", dict(fun=rosen, jac=rosen_der, hess=rosen_hess)),
    ("newton", dict(fun=rosen, jac=rosen_der, hessp=lambda x, p: rosen_hess(x) @ p)),
    ("newton", dict(fun=rosen, jac=rosen_der, hess=rosen_hess, bounds=([-2, -2], [0.5, 2]))),
    ("gauss-newton", dict(fun=residual, jac=jacobian)),
    ("lm", dict(fun=residual, jac=jacobian)),
    ("lm", dict(fun=residual, jac=jacobian, options={"damping": 1e-3})),
    ("hig", dict(fun=residual, jac=jacobian, options={"line_search": True})),
    ("hig", dict(fun=residual, jac=jacobian, bounds=([-2, -2], [0.5, 2]))),
    ("trf", dict(fun=residual, jac=jacobian)),
    ("trf", dict(fun=residual, jac=jacobian, bounds=([-2, -2], [0.5, 2]))),
]


@pytest.mark.parametrize("method, kw", CASES)
def test_step_leaves_its_input_state_unchanged(method, kw, monkeypatch):
    classes = {METHODS[method], ProjectedNewton}
    steps = []
    for cls in classes:
        original = cls.__dict__.get("step") or cls.step

        def spy(self, state, _original=original):
            before = _snapshot(state)
            new = _original(self, state)
            _same(_snapshot(state), before)
            assert new is not state
            steps.append(new)
            return new

        monkeypatch.setattr(cls, "step", spy)
    res = nk.minimize(method=method, x0=np.array([-1.2, 1.0]), **kw)
    assert len(steps) >= 2 and res.nfev >= 2


def test_the_spy_sees_an_in_place_change():
    """The check bites: a step that appends to a list in the state's data is caught."""
    from newtonkit.methods import State

    s = State(np.zeros(2), 1.0, data={"h": []})
    before = _snapshot(s)
    s.data["h"].append(1)
    with pytest.raises(AssertionError):
        _same(_snapshot(s), before)


def test_lm_data_copies_are_new_and_checked():
    """LMData.but: a copy with changes; the original keeps its values; unknown names raise."""
    from newtonkit.methods.levenberg_marquardt import LMData

    d = LMData(ev=None, update="trust-region")
    e = d.after_trial(False, par=2.0)
    assert (e.par, e.nonfinite_run, e.since_nonfinite) == (2.0, 1, 0)
    assert (d.par, d.nonfinite_run, d.since_nonfinite) == (0.0, 0, -1)
    f = e.after_trial(True)
    assert (f.nonfinite_run, f.since_nonfinite) == (0, 1)
    with pytest.raises(ValueError, match="pra"):
        d.but(pra=1.0)
    with pytest.raises(AttributeError):
        d.par = 1.0
