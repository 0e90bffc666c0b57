"""Linear solvers for second-order and inverse-Jacobian steps (DESIGN §4).

- :func:`regularized_cholesky_solve`: ``(H + τI) h = −g`` with eigen / retry / fixed shifts.
- :func:`half_inverse`: truncated ``J^κ g = V_k Σ_k^κ U_kᵀ g`` (HIG for κ = −1/2);
  :func:`truncated_svd` its factors ``U_k, Σ_k, V_kᵀ``.
- :func:`gauss_newton_step`: ``(JᵀJ + μD) d = −Jᵀr`` by QR, SVD, Cholesky or CGLS.
- :func:`lanczos`, :func:`cgls`, :func:`truncated_cg`: the matrix-free pieces.
"""

from ._checks import LinAlgError
from .cholesky import CholeskyInfo, regularized_cholesky_solve
from .gauss_newton import GaussNewtonInfo, gauss_newton_step
from .half_inverse import HalfInverseInfo, half_inverse, truncated_svd
from .krylov import KrylovInfo, cgls, truncated_cg
from .lanczos import Ritz, lanczos, lanczos_ritz

__all__ = [
    "regularized_cholesky_solve", "CholeskyInfo", "half_inverse", "HalfInverseInfo",
    "truncated_svd",
    "gauss_newton_step", "GaussNewtonInfo", "lanczos", "lanczos_ritz", "Ritz", "cgls",
    "truncated_cg", "KrylovInfo",
    "LinAlgError",
]
