"""The main job (`make demo`): reproduce the seed documents' results.

Runs each example in its own process, in order, and stops at the first failure:

1. ``hig_toy.py``: the Half-Inverse Gradients toy problem (seed 001), Adam vs Gauss-Newton vs
   HIG at λ = 1 and λ = 0.01.
2. ``oscillators.py --quick``: the coupled nonlinear oscillators (seed 001's main benchmark),
   HIG vs Adam vs Gauss-Newton on an equal wall-clock budget.
3. ``deepwave_hessian.py``: deepwave's Hessian example (seed 000) by regularised Newton, then
   matrix-free Gauss-Newton and HIG on the same problem.
4. ``fwi.py --quick``: many-shot full-waveform inversion sharded over 2 processes, Gauss-Newton
   and LM against L-BFGS and Adam at equal time per frequency band.
5. ``poisson_pinn.py --quick``: a physics-informed network for the 2-D Poisson equation
   (Dangel, Müller & Zeinhofer 2024), Gauss-Newton with a line search vs Adam and L-BFGS on an
   equal wall-clock budget.

Figures and tables go to ``examples/output/``.
"""

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
JOBS = [["hig_toy.py"], ["oscillators.py", "--quick"], ["deepwave_hessian.py"],
        ["fwi.py", "--quick"], ["poisson_pinn.py", "--quick"]]


def main() -> int:
    for job in JOBS:
        print(f"\n=== {' '.join(job)} ===", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(HERE / job[0]), *job[1:]])
        print(f"=== {job[0]}: exit {rc} after {time.perf_counter() - t0:.0f} s ===", flush=True)
        if rc:
            return rc
    print(f"\nAll examples done; figures and tables in {HERE / 'output'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
