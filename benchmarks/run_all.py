"""Run every benchmark in one go (`make bench`); each writes its table to benchmarks/output/."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
JOBS = [["bench_core.py"], ["bench_nls.py"], ["bench_oscillators.py"], ["bench_deepwave.py"],
        ["bench_batch.py"], ["bench_curve_fit.py"], ["bench_lsq.py"], ["bench_scale.py"]]

if __name__ == "__main__":
    failed = [job[0] for job in JOBS
              if subprocess.call([sys.executable, str(HERE / job[0]), *job[1:]]) != 0]
    if failed:
        print("failed:", ", ".join(failed))
    sys.exit(1 if failed else 0)
