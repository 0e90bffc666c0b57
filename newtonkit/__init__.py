"""newtonkit: second-order and inverse-Jacobian optimisation on abstract operators.

``newtonkit.minimize(fun, x0, method=...)`` runs regularised Newton, Gauss-Newton /
Levenberg-Marquardt or Half-Inverse Gradients on NumPy, PyTorch or CuPy arrays, with SciPy's
conventions (``OptimizeResult``, status codes, callbacks).
"""

from . import linalg, operators
from ._batch import BatchResult, multistart
from ._curve_fit import curve_fit
from ._least_squares import least_squares
from ._minimize import OptimizeResult, minimize
from ._status import Status
from .linalg import (
    cgls,
    gauss_newton_step,
    half_inverse,
    lanczos,
    regularized_cholesky_solve,
    truncated_cg,
)
from .operators import (
    AdjointOperator,
    DiagonalOperator,
    FunctionOperator,
    GramOperator,
    HessianOperator,
    IdentityOperator,
    JacobianOperator,
    LinearOperator,
    MatrixOperator,
    ProductOperator,
    ScaledOperator,
    SumOperator,
    VStackOperator,
    aslinearoperator,
    dottest,
)
from .problems import (
    Composite,
    FiniteDifferenceWarning,
    ForwardModel,
    L2Loss,
    Loss,
    RobustLoss,
    get_autodiff,
    register_autodiff,
)

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``newtonkit.testing`` (the checkers for users' own models) loads on first use only
    if name == "testing":
        import importlib

        return importlib.import_module(".testing", __name__)
    raise AttributeError(f"module 'newtonkit' has no attribute {name!r}")

__all__ = [
    "minimize", "least_squares", "curve_fit", "OptimizeResult", "RobustLoss",
    "BatchResult", "multistart", "Status", "Composite", "L2Loss",
    "ForwardModel", "Loss",
    "register_autodiff", "get_autodiff", "FiniteDifferenceWarning", "linalg", "operators",
    "regularized_cholesky_solve", "half_inverse", "gauss_newton_step", "lanczos", "cgls",
    "truncated_cg", "LinearOperator", "MatrixOperator", "FunctionOperator", "IdentityOperator",
    "DiagonalOperator", "SumOperator", "ProductOperator", "ScaledOperator", "AdjointOperator",
    "VStackOperator", "GramOperator", "JacobianOperator", "HessianOperator", "aslinearoperator",
    "dottest",
]
