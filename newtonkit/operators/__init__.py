"""Linear operators: the interface the solvers see (DESIGN §3)."""

from ._base import (
    AdjointOperator,
    LinearOperator,
    ProductOperator,
    ScaledOperator,
    SumOperator,
)
from ._derivative import GramOperator, HessianOperator, JacobianOperator
from ._dottest import dottest
from ._kinds import (
    DiagonalOperator,
    FunctionOperator,
    IdentityOperator,
    MatrixOperator,
    VStackOperator,
    aslinearoperator,
)

__all__ = [
    "LinearOperator", "MatrixOperator", "FunctionOperator", "IdentityOperator",
    "DiagonalOperator", "SumOperator", "ProductOperator", "ScaledOperator", "AdjointOperator",
    "VStackOperator", "GramOperator", "JacobianOperator", "HessianOperator",
    "aslinearoperator", "dottest",
]
