"""Linear operators: the interface the solvers see (DESIGN §3)."""

from ._base import LinearOperator
from ._derivative import GramOperator, HessianOperator, JacobianOperator
from ._dottest import dottest
from ._kinds import (
    AdjointOperator,
    DiagonalOperator,
    FunctionOperator,
    IdentityOperator,
    MatrixOperator,
    ProductOperator,
    ScaledOperator,
    SumOperator,
    VStackOperator,
    aslinearoperator,
)

__all__ = [
    "LinearOperator", "MatrixOperator", "FunctionOperator", "IdentityOperator",
    "DiagonalOperator", "SumOperator", "ProductOperator", "ScaledOperator", "AdjointOperator",
    "VStackOperator", "GramOperator", "JacobianOperator", "HessianOperator",
    "aslinearoperator", "dottest",
]
