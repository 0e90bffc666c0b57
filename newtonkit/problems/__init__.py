"""Problems: objectives, residuals, forward models with losses, and derivative providers.

``ScalarProblem`` wraps a scalar objective for Newton; ``OutputProblem`` a residual callable or
a :class:`Composite` for Gauss-Newton, Levenberg-Marquardt and HIG.  Derivative providers for
array backends register with :func:`register_autodiff`.
"""

from ._common import FiniteDifferenceWarning
from ._composite import Composite, ForwardModel, L2Loss, Loss
from ._objective import ScalarProblem
from ._outputs import Evaluation, OutputProblem
from ._registry import get_autodiff, register_autodiff
from ._robust import RobustLoss

__all__ = [
    "Composite", "ForwardModel", "Loss", "L2Loss", "RobustLoss", "ScalarProblem", "OutputProblem",
    "Evaluation", "FiniteDifferenceWarning", "register_autodiff", "get_autodiff",
]
