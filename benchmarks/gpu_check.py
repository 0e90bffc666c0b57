"""One prepared check of every GPU claim (issue 19): tests, device residency, GPU benchmarks.

Run on a machine with an NVIDIA GPU (``docs/gpu.md``; one command, under 8 minutes, after
``bash benchmarks/gpu_wheels.sh fetch`` where there is network)::

    bash benchmarks/gpu_wheels.sh install .whl /tmp/site && PYTHONPATH=/tmp/site:. \
        GPU_CHECK_OUT=<folder> PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py

and on any machine, on the CPU, in about a minute (CI runs this through test_gpu_check.py)::

    PYTHONPATH=. python benchmarks/gpu_check.py --dry-run

The GPU machine has Python 3.12, torch 2.11 + CUDA 13, cupy-cuda13x 14, numpy, scipy,
matplotlib, tqdm, pytest, pytest-xdist, pytest-timeout and hypothesis, and no network.  What it
lacks comes as wheels (``benchmarks/gpu_wheels.sh`` fetches them into ``.whl/``)::

    array-api-compat 1.16.0, array-api-strict 2.6.1 (pure Python)
    deepwave 0.1.0 (manylinux x86_64; its 363 MB library travels xz-compressed, 40 MB, beside
    the rest of its wheel, 1.3 MB: see gpu_wheels.sh)

The project itself is put on ``PYTHONPATH`` (nothing is built).

Sections, in this order, each capped in time and isolated (on the GPU each runs in its own
process; a section that fails or runs out of time records that in the JSON and the rest run):

``env``          versions, the device, the wheels' versions against the list above.
``cuda_tests``   the CUDA tests (``tests/torch_adapter/test_cuda.py``, the driver's GPU test).
``residency``    minimize (newton, gn, lm, hig), least_squares (with and without bounds),
                 curve_fit, a batched LM solve and the torch optimizers (HIG, GaussNewton, its
                 adaptive variant) on CUDA tensors, and the same solvers on CuPy arrays, with
                 every read of a device array to the host recorded (below).
``hig_gemm``     the HIG direction at 4,096 × 24,896 float32 against one GEMM of its Gram
                 ``J Jᵀ`` timed in the same run: fraction = t(GEMM) / t(direction), target ≥ 0.5.
``fits``         batched 2-D Gaussian fits (benchmarks/bench_batch.py's Gpufit problem), torch
                 float32 on the GPU, B = 1e6: fits/s, target ≥ 3.04e6 (Gpufit's published GPU
                 figure).
``deepwave``     the seed problem on the GPU: ``MSEMisfit.hessian`` against
                 ``torch.autograd.functional.hessian`` (target ≥ 5×), and the seed's three Newton
                 iterations against matrix-free Gauss-Newton to the seed's loss (target ≥ 30×,
                 bench_deepwave.py's); both timed in this run.
``pinn``         one Gauss-Newton (ENGD-like) training step of a 2-D Poisson PINN (MLP 2-64-1,
                 257 parameters, 900 interior and 120 boundary points, float64) with
                 ``newtonkit_torch.optim.GaussNewton(adaptive=True)`` (Levenberg-Marquardt):
                 ms per step on the GPU and on the CPU, in the same run (no target).
``property_suite``  the whole test suite with ``NEWTONKIT_TEST_DEVICE=cuda`` (generated torch
                 cases on CUDA, CuPy as a fourth backend), with whatever time is left.

Host reads (``residency``).  While a solver runs, every ``Tensor.cpu()``, ``.to("cpu")``,
``.tolist()``, ``.item()``, ``__array__`` (``numpy.asarray``), ``float()``, ``int()`` and
``bool()`` of a torch tensor, and every ``newtonkit._backend.to_numpy`` / ``cupy.asnumpy`` of a
CuPy array, is recorded with its element count and the first caller frame inside newtonkit.  A
read of at most ``allowance`` elements is a *scalar sync*, the price of a convergence decision:
allowance 1 for one problem, B (one value per problem) for a batch of B.  A larger read from
library code is a *violation*: a host copy of a vector, a Jacobian or a data array.  Reads from
the user's callables are listed apart and never violations.  ``Tensor.numpy()`` is not patched:
on a CUDA tensor it raises by itself (the case then fails), on a CPU tensor it is a view, not a
copy; an implicit ``numpy.asarray`` of a CuPy array raises likewise.  On CUDA,
``torch.cuda.set_sync_debug_mode("warn")`` counts every synchronising operation as well
(``syncs``; device-side ones such as ``nonzero`` included, which copy no data).  The dry run
counts the same calls on CPU tensors, so the same code paths and the same rule are exercised.

Output: ``gpu_check.json`` and ``gpu_check.log`` (dry run: ``gpu_check_dry.*``) in the folder
named by ``GPU_CHECK_OUT`` (default ``benchmarks/output``); the summary tables are printed last.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(ROOT), str(HERE), str(ROOT / "examples")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

#: The wheels brought to the GPU machine, with the versions this check was prepared with.
WHEELS = {"array_api_compat": "1.16.0", "array_api_strict": "2.6.1", "deepwave": "0.1.0"}
#: Total time the real run allows itself (the issue's 8 minutes less pip and start-up).
BUDGET = 440.0
DRY_BUDGET = 120.0
GPUFIT_GPU = 3.04e6  # fits/s at 1e7 fits, Gpufit (Przybylski et al. 2017)
LIBRARY = (str(ROOT / "newtonkit") + os.sep, str(ROOT / "newtonkit_torch") + os.sep)


class SectionTimeout(Exception):
    """A section ran past its cap."""


# -- the runner ------------------------------------------------------------------------------


class Context:
    """What a section sees: dry run or not, the device, the log, its deadline, ``save``."""

    def __init__(self, dry: bool, out: Path, log_path: Path, result_path: Path | None = None):
        self.dry = dry
        self.out = out
        self.log_path = log_path
        self.result_path = result_path
        self.device = "cpu" if dry else "cuda"
        self.deadline = math.inf

    def log(self, *parts) -> None:
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        if self.result_path is None:  # in a child, stdout already goes to the log
            with open(self.log_path, "a") as f:
                f.write(line + "\n")

    def save(self, rec: dict) -> None:
        """Write the section's record so far (a child's partial result survives a kill)."""
        if self.result_path is not None:
            self.result_path.write_text(json.dumps(rec, default=str))

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def sync(self) -> None:
        if not self.dry:
            import torch

            torch.cuda.synchronize()


SECTIONS: dict = {}


def section(name: str, cap: float, cap_dry: float):
    def deco(fn):
        SECTIONS[name] = (fn, cap, cap_dry)
        return fn
    return deco


@contextlib.contextmanager
def alarm(seconds: float):
    """Raise :class:`SectionTimeout` in the main thread after ``seconds``."""
    if threading.current_thread() is not threading.main_thread() or not math.isfinite(seconds):
        yield
        return

    def fire(signum, frame):
        raise SectionTimeout(f"ran past its cap of {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_in_process(name: str, ctx: Context, cap: float) -> dict:
    fn = SECTIONS[name][0]
    rec: dict = {"status": "running"}
    t0 = time.monotonic()
    ctx.deadline = t0 + cap
    try:
        with alarm(cap):
            fn(ctx, rec)
        if rec["status"] == "running":
            rec["status"] = "ok"
    except SectionTimeout as exc:
        rec["status"], rec["error"] = "timeout", str(exc)
        rec["traceback"] = traceback.format_exc()[-3000:]  # where it was
        ctx.log(rec["traceback"])
    except Exception as exc:  # a failing section records its error; the others run
        rec["status"] = "error"
        rec["error"] = f"{type(exc).__name__}: {exc}"
        rec["traceback"] = traceback.format_exc()[-3000:]
        ctx.log(rec["traceback"])
    rec["seconds"] = round(time.monotonic() - t0, 2)
    ctx.save(rec)
    return rec


def run_isolated(name: str, ctx: Context, cap: float) -> dict:
    """The section in a child process (a CUDA fault or a hang cannot take the rest along)."""
    result = ctx.out / f".gpu_check_{name}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--cap", str(cap),
           "--result", str(result)] + (["--dry-run"] if ctx.dry else [])
    t0 = time.monotonic()
    with open(ctx.log_path, "a") as log:
        rc, text = run_command(cmd, cap + 20, log=log)
    print(text, end="", flush=True)
    rec = json.loads(result.read_text()) if result.exists() else {}
    result.unlink(missing_ok=True)
    if rc is None:
        rec["status"], rec["error"] = "timeout", f"killed after {cap + 20:.0f} s"
    elif rc != 0 or rec.get("status") in (None, "running"):
        rec["status"] = "error"
        rec.setdefault("error", f"child exited with {rc} (see the log)")
    rec["seconds"] = round(time.monotonic() - t0, 2)
    return rec


def run_command(cmd, timeout: float, log=None, env=None) -> tuple[int | None, str]:
    """Run ``cmd`` in its own process group; ``(returncode or None on timeout, output)``.  On
    timeout the group gets SIGINT (pytest then prints its summary), then SIGKILL."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=ROOT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=max(timeout, 1))
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        rc = None
    finally:  # also on the section's own alarm: leave nothing running
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    if log is not None:
        log.write(out or "")
        log.flush()
    return rc, out or ""


def verdict(value: float | None, target: float | None, dry: bool) -> str:
    if target is None:
        return "report"
    if dry:
        return "n/a (dry run)"
    if value is None or not math.isfinite(value):
        return "no value"
    return "MET" if value >= target else "MISSED"


def row(rec: dict, ctx: Context, metric: str, value, unit: str, target=None,
        note: str = "") -> None:
    rec.setdefault("rows", []).append(dict(metric=metric, value=value, unit=unit, target=target,
                                           verdict=verdict(value, target, ctx.dry), note=note))
    ctx.log(f"  {metric}: {value:.4g} {unit}" if isinstance(value, float) else
            f"  {metric}: {value} {unit}", f"(target >= {target:g})" if target else "", note)
    ctx.save(rec)


def timed(fn, ctx: Context, repeats: int = 1, warmup: int = 1) -> tuple[float, object]:
    """Median wall time of ``fn()`` (device synchronised) and its last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    ctx.sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ctx.sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


# -- env ---------------------------------------------------------------------------------------


@section("env", 60, 30)
def s_env(ctx: Context, rec: dict) -> None:
    import numpy as np
    import scipy
    import torch

    rec["python"] = platform.python_version()
    rec["versions"] = {"numpy": np.__version__, "scipy": scipy.__version__,
                       "torch": torch.__version__, "torch_cuda": torch.version.cuda}
    missing = []
    for mod in ("cupy", "pytest", "hypothesis", "xdist", "pytest_timeout", *WHEELS):
        try:
            m = importlib.import_module(mod)
            rec["versions"][mod] = getattr(m, "__version__", "present")
        except Exception as exc:  # cupy without a GPU raises more than ImportError
            rec["versions"][mod] = f"missing ({type(exc).__name__})"
            if mod in WHEELS or mod in ("pytest", "hypothesis"):
                missing.append(mod)
    off = [f"{k} {rec['versions'][k]} (prepared with {v})" for k, v in WHEELS.items()
           if rec["versions"][k] != v and k not in missing]
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        rec["device"] = f"{p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs"
    else:
        rec["device"] = f"CPU only ({os.cpu_count()} cores)"
    ctx.log("  device:", rec["device"])
    ctx.log("  versions:", ", ".join(f"{k} {v}" for k, v in rec["versions"].items()))
    if missing or (not ctx.dry and not torch.cuda.is_available()):
        rec["status"] = "fail"
        rec["error"] = f"missing: {missing}" + ("" if ctx.dry or torch.cuda.is_available()
                                                else "; no CUDA device")
    if off:
        rec["note"] = "other versions than prepared: " + "; ".join(off)


# -- tests -------------------------------------------------------------------------------------


def pytest_summary(text: str) -> dict:
    """Counts from pytest's last summary line and the ids of failed tests."""
    counts: dict = {}
    for line in reversed(text.splitlines()):
        if re.search(r"\b(passed|failed|skipped|error|errors|no tests ran)\b", line) and \
                re.search(r" in [\d.]+s", line):
            for n, what in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|"
                                      r"deselected|warnings?)", line):
                counts[what.rstrip("s") if what.startswith("error") else what] = int(n)
            break
    failed = [ln.split(" - ")[0] for ln in text.splitlines()
              if ln.startswith(("FAILED ", "ERROR "))]
    return {"counts": counts, "failed": failed[:100], "interrupted": "Interrupted" in text
            or "KeyboardInterrupt" in text}


def run_pytest(ctx: Context, rec: dict, args: list[str], env_extra: dict) -> None:
    env = dict(os.environ, **env_extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE",
           "--tb=short", *args]
    if importlib.util.find_spec("pytest_timeout") is not None:
        cmd.append("--timeout=300")
    rec["command"] = " ".join(f"{k}={v}" for k, v in env_extra.items()) + " " + \
        " ".join(cmd[1:])
    ctx.log("  $", rec["command"])
    with open(ctx.log_path, "a") as log:
        rc, out = run_command(cmd, ctx.left() - 25, log=log, env=env)  # 15 s for SIGINT
    rec.update(pytest_summary(out))
    rec["returncode"] = rc
    c = rec["counts"]
    ctx.log(f"  pytest: {c}" + (" (interrupted at the cap)" if rc is None else ""))
    if rc is None:
        rec["status"] = "timeout"
    elif c.get("failed", 0) or c.get("error", 0) or rc not in (0, 5):
        rec["status"] = "fail"
    ctx.save(rec)


@section("cuda_tests", 90, 40)
def s_cuda_tests(ctx: Context, rec: dict) -> None:
    run_pytest(ctx, rec, ["tests/torch_adapter/test_cuda.py",
                          "tests/test_minimize_driver.py::test_results_stay_on_the_gpu"], {})


@section("property_suite", 400, 60)
def s_property_suite(ctx: Context, rec: dict) -> None:
    if ctx.dry:  # the same command on a small part of the suite, on the CPU
        run_pytest(ctx, rec, ["tests/test_backend.py", "-k", "namespace or standard_normal"],
                   {"NEWTONKIT_TEST_DEVICE": "cpu", "NEWTONKIT_HYPOTHESIS_PROFILE": "dev"})
        return
    xdist = ["-n", "8"] if importlib.util.find_spec("xdist") is not None else []
    run_pytest(ctx, rec, ["tests", *xdist], {"NEWTONKIT_TEST_DEVICE": "cuda"})


# -- residency ---------------------------------------------------------------------------------


_SKIP = tuple(os.sep + d + os.sep for d in ("torch", "array_api_compat", "cupy", "cupyx"))
_WRAPPERS = ("read", "to", "to_numpy", "asnumpy")  # HostReads' own frames


def _where(frame) -> tuple[bool, str]:
    """``(in the library, "file:line")`` of the code that asked for a read: the first frame
    outside torch, array-api-compat, CuPy, HostReads' wrappers and ``_backend.to_numpy``; in
    newtonkit, or inside the user's callable."""
    def skip(f) -> bool:
        fn, name = f.f_code.co_filename, f.f_code.co_name
        return (any(d in fn for d in _SKIP) or (fn == __file__ and name in _WRAPPERS)
                or (name == "to_numpy" and fn.endswith(os.path.join("newtonkit", "_backend.py"))))

    while frame is not None and skip(frame):
        frame = frame.f_back
    if frame is None:
        return False, "?"
    fn = frame.f_code.co_filename
    lib = fn.startswith(LIBRARY)
    return lib, f"{os.path.relpath(fn, ROOT) if lib else os.path.basename(fn)}:{frame.f_lineno}"


class HostReads:
    """Record reads of arrays to the host while active (module docstring, "Host reads")."""

    TORCH = ("cpu", "to", "tolist", "item", "__array__", "__float__", "__int__", "__bool__")

    def __init__(self, allowance: int, count_syncs: bool):
        self.allowance = allowance
        self.count_syncs = count_syncs
        self.events: list[tuple[str, int, bool, str]] = []
        self._busy = threading.local()
        self._undo: list = []
        self.syncs = None

    def record(self, kind: str, numel: int) -> None:
        if getattr(self._busy, "on", False):
            return
        self._busy.on = True
        try:
            self.events.append((kind, int(numel), *_where(sys._getframe(2))))
        finally:
            self._busy.on = False

    def _patch(self, owner, name: str, wrapper_of) -> None:
        own = name in owner.__dict__
        orig = getattr(owner, name)
        setattr(owner, name, wrapper_of(orig))
        self._undo.append((owner, name, orig, own))

    def __enter__(self):
        import torch

        tracker = self

        def wrap(name):
            def wrapper_of(orig):
                if name == "to":
                    def to(t, *a, **k):
                        out = orig(t, *a, **k)
                        if isinstance(out, torch.Tensor) and out.device.type == "cpu" and (
                                t.device.type != "cpu" or _names_cpu(a, k)):
                            tracker.record(".to(cpu)", t.numel())
                        return out
                    return to

                def read(t, *a, **k):
                    tracker.record(f".{name}()" if not name.startswith("__") else name,
                                   t.numel())
                    return orig(t, *a, **k)
                return read
            return wrapper_of

        for name in self.TORCH:
            self._patch(torch.Tensor, name, wrap(name))
        import newtonkit._backend as B

        def to_numpy_of(orig):
            def to_numpy(x):
                if not isinstance(x, torch.Tensor):  # torch tensors are counted at .cpu()
                    if type(x).__module__.startswith("cupy"):
                        tracker.record("to_numpy(cupy)", x.size)
                return orig(x)
            return to_numpy
        self._patch(B, "to_numpy", to_numpy_of)
        if "cupy" in sys.modules:
            cupy = sys.modules["cupy"]

            def asnumpy_of(orig):
                def asnumpy(a, *args, **kw):
                    tracker.record("cupy.asnumpy", getattr(a, "size", 1))
                    return orig(a, *args, **kw)
                return asnumpy
            self._patch(cupy, "asnumpy", asnumpy_of)
        if self.count_syncs:
            self._warn = warnings.catch_warnings(record=True)
            self._warned = self._warn.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc):
        for owner, name, orig, own in reversed(self._undo):
            if own:
                setattr(owner, name, orig)
            else:
                delattr(owner, name)
        self._undo.clear()
        if self.count_syncs:
            import torch

            torch.cuda.set_sync_debug_mode("default")
            self.syncs = sum("synchroniz" in str(w.message) for w in self._warned)
            self._warn.__exit__(*exc)
        return False

    def summary(self) -> dict:
        lib = [e for e in self.events if e[2]]
        bad: dict = {}
        user: dict = {}
        for kind, numel, in_lib, where in self.events:
            if not in_lib:
                key = f"{where} {kind}"
                user[key] = user.get(key, 0) + 1
            elif numel > self.allowance:
                key = f"{where} {kind} of {numel} elements"
                bad[key] = bad.get(key, 0) + 1
        return {"reads": len(lib), "scalar_syncs": sum(e[1] <= self.allowance for e in lib),
                "largest_read": max((e[1] for e in lib), default=0),
                "violations": [f"{k} (x{v})" for k, v in bad.items()],
                "user_reads": [f"{k} (x{v})" for k, v in user.items()],
                "syncs": self.syncs, "allowance": self.allowance}


def _names_cpu(args, kwargs) -> bool:
    for a in list(args) + [kwargs.get("device")]:
        if a == "cpu" or getattr(a, "type", None) == "cpu":
            return True
    return False


def _decay_problem(xp, like, dtype):
    """``y = 2.5 exp(-1.3 t) + 0.5`` (+ fixed noise) on 40 points of [0, 4]: (t, y)."""
    import numpy as np

    t = np.linspace(0.0, 4.0, 40)
    y = 2.5 * np.exp(-1.3 * t) + 0.5 + 0.01 * np.sin(7.0 * t)
    return (_to(xp, like, t, dtype), _to(xp, like, y, dtype))


def _to(xp, like, a, dtype):
    """``a`` (NumPy) as an array of ``like``'s backend and device (``xp``: its array-api-compat
    namespace)."""
    import array_api_compat

    return xp.asarray(a, dtype=dtype, device=array_api_compat.device(like))


def _decay_fns(t, y):
    """Residual, Jacobian, objective, gradient and exact Hessian of the decay fit, written with
    the array API (any backend)."""
    import array_api_compat

    xp = array_api_compat.array_namespace(t)

    def model(tt, a, b, c):
        return a * xp.exp(-b * tt) + c

    def r(p):
        return model(t, p[0], p[1], p[2]) - y

    def jac(p):
        e = xp.exp(-p[1] * t)
        return xp.stack([e, -p[0] * t * e, xp.ones_like(e)], axis=1)

    def jac_curve(tt, a, b, c):
        e = xp.exp(-b * tt)
        return xp.stack([e, -a * tt * e, xp.ones_like(e)], axis=1)

    def f(p):
        return 0.5 * xp.sum(r(p) ** 2)

    def grad(p):
        return jac(p).T @ r(p)

    def hess(p):
        J, res, e = jac(p), r(p), xp.exp(-p[1] * t)
        s01 = xp.sum(res * (-t * e))
        s11 = xp.sum(res * (p[0] * t * t * e))
        z = xp.zeros_like(s01)
        extra = xp.stack([xp.stack([z, s01, z]), xp.stack([s01, s11, z]), xp.stack([z, z, z])])
        return J.T @ J + extra

    return dict(model=model, r=r, jac=jac, jac_curve=jac_curve, f=f, grad=grad, hess=hess)


def _gauss2d_generic(xp, like, dtype, B):
    """bench_batch's 2-D Gaussian problem on ``like``'s backend and device: fun, jac, X0, data."""
    import array_api_compat
    import bench_batch as bb

    _, data, starts = bb.gauss2d_problems(B, seed=3)
    fun, jac = bb.gauss2d_xp(xp, device=array_api_compat.device(like), dtype=dtype)
    return fun, jac, _to(xp, like, starts, dtype), _to(xp, like, data, dtype)


def residency_cases(xp, like, dtype, torch_extras: bool):
    """``[(name, allowance, call)]``: each call runs one solve and returns ``(success, x)``."""
    import newtonkit as nk

    t, y = _decay_problem(xp, like, dtype)
    F = _decay_fns(t, y)
    p0 = _to(xp, like, [1.0, 1.0, 0.0], dtype)
    lb, ub = _to(xp, like, [0.0, 0.0, -1.0], dtype), _to(xp, like, [10.0, 10.0, 1.0], dtype)
    B = 256
    gfun, gjac, X0, data = _gauss2d_generic(xp, like, dtype, B)

    def res(r):
        return r.success, r.x

    def fit(popt_pcov):
        popt, pcov = popt_pcov
        return bool(xp.all(xp.isfinite(pcov))), popt

    cases = [
        ("minimize newton", 1, lambda: res(nk.minimize(F["f"], p0, method="newton",
                                                       jac=F["grad"], hess=F["hess"]))),
        ("minimize gn", 1, lambda: res(nk.minimize(F["r"], p0, method="gn", jac=F["jac"]))),
        ("minimize lm", 1, lambda: res(nk.minimize(F["r"], p0, method="lm", jac=F["jac"]))),
        # gtol 1e-6: at a minimum with a nonzero residual a line search on f sees a decrease
        # only while f − f* > ~ε·f*, i.e. while the scaled gradient is above ~√ε ≈ 1.5e-8, so
        # the default 1e-8 is met or not (status 2) by the rounding of the machine
        ("minimize hig", 1, lambda: res(nk.minimize(F["r"], p0, method="hig", jac=F["jac"],
                                                    options={"line_search": True,
                                                             "gtol": 1e-6}))),
        ("least_squares", 1, lambda: res(nk.least_squares(F["r"], p0, jac=F["jac"]))),
        ("least_squares bounds", 1, lambda: res(nk.least_squares(
            F["r"], p0, jac=F["jac"], bounds=(lb, ub), method="trf"))),
        ("curve_fit", 1, lambda: fit(nk.curve_fit(F["model"], t, y, p0=p0,
                                                  jac=F["jac_curve"]))),
        (f"batched lm (B = {B})", B, lambda: res(nk.minimize(
            gfun, X0, method="lm", jac=gjac, args=(data,), batch=True))),
    ]
    if xp.finfo(dtype).bits == 64:  # in float32 a few bounded fits end at the rounding floor
        # with a failed line search (status 2, not success), which this section would report
        cases.append((f"batched gn, bounds (B = {B})", B, lambda: res(nk.minimize(
            gfun, X0, method="gn", jac=gjac, args=(data,), batch=True,
            bounds=(X0 - 100.0, X0 + 100.0)))))
    if torch_extras:  # derivatives by the torch adapter, and the torch optimizers
        cases += [
            ("minimize newton (autograd)", 1, lambda: res(nk.minimize(F["f"], p0,
                                                                      method="newton"))),
            ("minimize lm (autograd)", 1, lambda: res(nk.minimize(F["r"], p0, method="lm"))),
            ("optim.HIG, 3 steps", 1, lambda: _optimizer_run(like, dtype, "hig")),
            ("optim.GaussNewton, 3 steps", 1, lambda: _optimizer_run(like, dtype, "gn")),
            ("optim.GaussNewton adaptive, 3 steps", 1,
             lambda: _optimizer_run(like, dtype, "adaptive")),
        ]
    return cases


def _all_true(v) -> bool:
    """``all(v)`` for a bool, a NumPy array or a backend array (read after the solve)."""
    import numpy as np

    if isinstance(v, (bool, np.bool_, np.ndarray)):
        return bool(np.all(v))
    import array_api_compat

    return bool(array_api_compat.array_namespace(v).all(v))


def _same_place(x, like) -> bool:
    """Whether ``x`` is an array of ``like``'s type on ``like``'s device."""
    import array_api_compat

    return type(x) is type(like) and array_api_compat.device(x) == array_api_compat.device(like)


def _optimizer_run(like, dtype, kind: str) -> bool:
    import torch
    from torch import nn

    from newtonkit_torch.optim import HIG, GaussNewton

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).to(like.device, dtype)
    X = torch.linspace(-1, 1, 32, dtype=dtype, device=like.device).reshape(16, 2)

    def physics(out, x):
        return out * torch.stack([torch.ones_like(x[0]), 0.1 * x[0]])

    def loss_fn(yy, x):
        return 0.5 * ((yy - torch.sin(3 * x)) ** 2).sum(-1).mean()

    opt = (HIG(net.parameters()) if kind == "hig"
           else GaussNewton(net.parameters(), adaptive=kind == "adaptive"))
    losses = [opt.step(opt.physics_closure(net, X, physics, loss_fn)) for _ in range(3)]
    return all(loss.device == like.device for loss in losses), next(net.parameters()).data


@section("residency", 120, 60)
def s_residency(ctx: Context, rec: dict) -> None:
    import torch

    rec["cases"] = []
    import array_api_compat

    like = torch.zeros(1, device=ctx.device)
    backends = [("torch", array_api_compat.array_namespace(like), like)]
    try:
        if ctx.dry:
            raise ImportError("the dry run has no GPU")
        import cupy

        like = cupy.zeros(1)
        backends.append(("cupy", array_api_compat.array_namespace(like), like))
    except Exception as exc:
        rec["cupy"] = f"not run: {type(exc).__name__}: {exc}"
        ctx.log("  cupy cases not run:", rec["cupy"])
    for bname, xp, like in backends:
        for dname in ("float64", "float32"):
            dtype = getattr(xp, dname)
            for name, allowance, call in residency_cases(xp, like, dtype, bname == "torch"):
                if dname == "float32" and not name.startswith(("minimize lm", "batched")):
                    continue  # float32: the LM paths, single and batched
                case = {"case": name, "backend": bname, "dtype": dname}
                try:
                    with HostReads(allowance, count_syncs=bname == "torch" and not ctx.dry) \
                            as reads:
                        success, x = call()
                    case.update(reads.summary())
                    case["success"] = _all_true(success)
                    case["x_on_device"] = _same_place(x, like)
                    if not case["x_on_device"]:
                        case["violations"].append(f"the result is a {type(x).__name__} on "
                                                  f"{getattr(x, 'device', 'the host')}")
                except SectionTimeout:
                    raise
                except Exception as exc:
                    case["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                rec["cases"].append(case)
                bad = case.get("violations") or case.get("error")
                ctx.log(f"  {bname} {dname} {name}: "
                        + (f"ERROR {case['error']}" if "error" in case else
                           f"{case['reads']} reads ({case['scalar_syncs']} scalar), largest "
                           f"{case['largest_read']}, syncs {case['syncs']}, success "
                           f"{case['success']}")
                        + ("" if not case.get("violations") else
                           "; VIOLATIONS: " + "; ".join(case["violations"])))
                if bad:
                    rec["status"] = "fail"
                ctx.save(rec)
    n_bad = sum(bool(c.get("violations") or c.get("error")) for c in rec["cases"])
    rec["summary"] = f"{n_bad} of {len(rec['cases'])} cases with a violation or an error"


# -- benchmarks --------------------------------------------------------------------------------


@section("hig_gemm", 75, 30)
def s_hig_gemm(ctx: Context, rec: dict) -> None:
    import numpy as np
    import torch
    from bench_core import jacobian_like

    from newtonkit.linalg import half_inverse

    m, n = (256, 1556) if ctx.dry else (4096, 24896)
    J = torch.from_numpy(jacobian_like(m, n, np.random.default_rng(0))).to(ctx.device)
    g = torch.randn(m, generator=torch.Generator().manual_seed(1)).to(ctx.device)
    t_gemm, _ = timed(lambda: J @ J.T, ctx, repeats=5, warmup=2)
    row(rec, ctx, f"GEMM J·Jᵀ {m}×{n} float32", 2.0 * m * m * n / t_gemm / 1e12, "TFLOP/s",
        note=f"{t_gemm * 1e3:.2f} ms; TF32 "
             f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}")
    t_hig, (d, info) = timed(lambda: half_inverse(J, g, -0.5, 1e-6), ctx, repeats=3)
    rec["route"], rec["rank"] = info.route, int(info.rank)
    row(rec, ctx, f"HIG direction {m}×{n} float32", t_hig * 1e3, "ms",
        note=f"route {info.route}, rank {info.rank}, on {d.device}")
    row(rec, ctx, "HIG direction / GEMM throughput", t_gemm / t_hig, "fraction", 0.5,
        note="t(J·Jᵀ) / t(direction)")


@section("fits", 120, 30)
def s_fits(ctx: Context, rec: dict) -> None:
    import array_api_compat
    import torch
    from bench_batch import gauss2d_problems, gauss2d_xp

    import newtonkit as nk

    xp = array_api_compat.array_namespace(torch.zeros(0))
    fun, jac = gauss2d_xp(xp, device=ctx.device, dtype=torch.float32)

    def fit(B):
        _, data, starts = gauss2d_problems(B, seed=0)
        data = torch.as_tensor(data, dtype=torch.float32).to(ctx.device)
        X0 = torch.as_tensor(starts, dtype=torch.float32).to(ctx.device)
        ctx.sync()
        t0 = time.perf_counter()
        res = nk.minimize(fun, X0, method="lm", jac=jac, args=(data,), batch=True)
        ctx.sync()
        return time.perf_counter() - t0, res

    sizes = (1000,) if ctx.dry else (10_000, 100_000, 1_000_000)
    fit(sizes[0])  # warm-up: kernels, allocator
    for B in sizes:
        t, res = fit(B)
        ok = float(torch.as_tensor(res.success).float().mean())
        row(rec, ctx, f"batched 2-D Gaussian fits, B = {B:.0e}, float32", B / t, "fits/s",
            GPUFIT_GPU if B >= 1_000_000 else None,
            note=f"{t:.2f} s, converged {ok:.3f}, x on {res.x.device}")


@section("deepwave", 150, 40)
def s_deepwave(ctx: Context, rec: dict) -> None:
    import bench_deepwave as bd
    import torch

    warnings.filterwarnings("ignore", category=bd.deepwave.ZeroWidthFaceWarning)
    size = dict(ny=8, nx=9, nt=30) if ctx.dry else {}
    p = bd.ex.seed_problem(device=ctx.device, **size)
    wrap, ratio = bd.seed_wrap(p)
    v0, misfit = p["v_init"], p["misfit"]
    n = v0.numel()
    rec["problem"] = f"{tuple(v0.shape)} = {n} parameters, step ratio {ratio}"
    ctx.log("  problem:", rec["problem"])

    def synced(fn):
        def call():
            out = fn()
            ctx.sync()
            return out
        return call

    synced(lambda: misfit.hessian(v0))()  # warm-up (deepwave's kernels, autograd)
    repeats = 1 if ctx.dry else 2
    dense = bd.median_interleaved(
        {"torch": synced(lambda: torch.autograd.functional.hessian(wrap, v0).reshape(n, n)),
         "newtonkit": synced(lambda: misfit.hessian(v0))}, repeats)
    (t_ref, H_ref), (t_nk, H_nk) = dense["torch"], dense["newtonkit"]
    diff = float((H_nk - 0.5 * (H_ref + H_ref.T)).norm() / H_ref.norm())
    row(rec, ctx, f"deepwave dense Hessian {n}×{n}: functional.hessian / MSEMisfit.hessian",
        t_ref / t_nk, "x", 5.0,
        note=f"{t_ref:.2f} s vs {t_nk:.2f} s, relative difference {diff:.1e}")
    iterations = 1 if ctx.dry else 3
    _, losses, t_seed, _ = bd.seed_path(p, wrap, iterations=iterations)
    t_gn, it_gn, f_gn = bd.newtonkit_gn(p, losses[-1])
    rec["seed_losses"] = losses
    row(rec, ctx, "Gauss-Newton to the seed's loss (matrix-free)", t_gn, "s",
        note=f"{it_gn} iterations, loss {f_gn:.3e} <= {losses[-1]:.3e}")
    row(rec, ctx, "seed's Newton path / Gauss-Newton, time to the seed's loss", t_seed / t_gn,
        "x", 30.0, note=f"seed {t_seed:.2f} s ({iterations} iterations)")


def pinn_problem(device, dtype, n_int: int = 900, n_bnd: int = 120):
    """2-D Poisson ``-Δu = 2π² sin(πx) sin(πy)`` on the unit square, ``u = 0`` on its edge;
    MLP 2-64-1; interior and boundary points from a fixed seed.  ``(net, closure, optimizer)``,
    the closure giving ``(y, loss, J)`` with ``y`` the scaled residuals (ENGD's least squares)."""
    import torch
    from torch import nn
    from torch.func import functional_call, hessian, jacrev, vmap

    from newtonkit_torch.optim import GaussNewton

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 1)).to(device, dtype)
    gen = torch.Generator().manual_seed(1)
    x_int = torch.rand(n_int, 2, generator=gen, dtype=dtype).to(device)
    s = torch.rand(n_bnd, generator=gen, dtype=dtype)
    side = torch.arange(n_bnd) % 4
    x_bnd = torch.stack([torch.where(side == 0, 0.0, torch.where(side == 1, 1.0, s)),
                         torch.where(side == 2, 0.0, torch.where(side == 3, 1.0, s))],
                        1).to(device, dtype)
    pi = math.pi
    f_int = 2 * pi ** 2 * torch.sin(pi * x_int[:, 0]) * torch.sin(pi * x_int[:, 1])
    names = [k for k, _ in net.named_parameters()]

    def u(params, x):
        return functional_call(net, params, (x[None],))[0, 0]

    def residuals(params):
        lap = vmap(lambda x: torch.diagonal(hessian(u, argnums=1)(params, x)).sum())(x_int)
        r_int = (-lap - f_int) / math.sqrt(n_int)
        r_bnd = vmap(lambda x: u(params, x))(x_bnd) / math.sqrt(n_bnd)
        return torch.cat([r_int, r_bnd])

    opt = GaussNewton(net.parameters(), adaptive=True)  # Marquardt's damping: a step lowers

    def closure():
        params = {k: v.detach() for k, v in net.named_parameters()}
        jac = jacrev(residuals)(params)
        J = torch.cat([jac[k].reshape(n_int + n_bnd, -1) for k in names], 1)
        y = residuals(params).detach().requires_grad_(True)
        with torch.enable_grad():
            loss = 0.5 * (y ** 2).sum()
        return y, loss, J

    return net, closure, opt


@section("pinn", 60, 30)
def s_pinn(ctx: Context, rec: dict) -> None:
    import torch

    devices = ["cpu"] if ctx.dry else [ctx.device, "cpu"]
    per_step = {}
    size = dict(n_int=60, n_bnd=20) if ctx.dry else {}
    for dev in devices:
        net, closure, opt = pinn_problem(dev, torch.float64, **size)
        steps = 1 if ctx.dry else (5 if dev == ctx.device else 2)
        loss0 = float(opt.step(closure))  # warm-up step
        t, loss = timed(lambda opt=opt, closure=closure: opt.step(closure), ctx,
                        repeats=steps, warmup=0)
        per_step[dev] = t
        row(rec, ctx, f"PINN Gauss-Newton step ({dev}, 257 parameters, "
                      f"{sum(size.values()) or 1020} points)",
            t * 1e3, "ms", note=f"loss {loss0:.3e} -> {float(loss):.3e}; route "
                                f"{next(iter(opt.state.values())).get('route')}")
    if len(per_step) == 2:
        row(rec, ctx, "PINN step, CPU / GPU", per_step["cpu"] / per_step[ctx.device], "x",
            note=f"CPU: {torch.get_num_threads()} threads")


ORDER = ("env", "cuda_tests", "residency", "hig_gemm", "fits", "deepwave", "pinn",
         "property_suite")


# -- the report --------------------------------------------------------------------------------


def tables(doc: dict) -> str:
    lines = ["| section | status | time (s) | note |", "|---|---|---|---|"]
    for name, rec in doc["sections"].items():
        note = rec.get("error") or rec.get("summary") or rec.get("note") or ""
        if "counts" in rec:
            note = ", ".join(f"{v} {k}" for k, v in rec["counts"].items()) + (
                f"; failed: {', '.join(rec['failed'][:5])}" if rec.get("failed") else "")
        lines.append(f"| {name} | {rec['status']} | {rec.get('seconds', 0):.1f} | "
                     f"{str(note)[:200]} |")
    lines += ["", "| benchmark | value | unit | target | verdict | note |",
              "|---|---|---|---|---|---|"]
    for rec in doc["sections"].values():
        for r in rec.get("rows", []):
            v = r["value"]
            lines.append(f"| {r['metric']} | {v:.4g} | {r['unit']} | "
                         f"{'' if r['target'] is None else format(r['target'], 'g')} | "
                         f"{r['verdict']} | {r['note']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="the same code paths on the CPU")
    ap.add_argument("--only", nargs="+", choices=ORDER, help="run these sections only")
    ap.add_argument("--isolate", choices=("yes", "no"), default=None,
                    help="each section in its own process (default: yes, no for --dry-run)")
    ap.add_argument("--budget", type=float, default=None,
                    help=f"seconds for all sections (default {BUDGET:g}, dry run "
                         f"{DRY_BUDGET:g})")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--cap", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    out = Path(os.environ.get("GPU_CHECK_OUT") or HERE / "output")
    out.mkdir(parents=True, exist_ok=True)
    stem = "gpu_check_dry" if args.dry_run else "gpu_check"
    log_path = out / f"{stem}.log"
    if args.child:
        ctx = Context(args.dry_run, out, log_path, args.result)
        run_in_process(args.child, ctx, args.cap)
        return 0
    log_path.write_text("")
    ctx = Context(args.dry_run, out, log_path)
    isolate = (args.isolate or ("no" if args.dry_run else "yes")) == "yes"
    budget = args.budget or (DRY_BUDGET if args.dry_run else BUDGET)
    start = time.monotonic()
    doc = {"dry_run": args.dry_run, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
           "host": platform.node(), "isolated": isolate, "budget_s": budget, "sections": {}}
    ctx.log(f"gpu_check {'dry run (CPU)' if args.dry_run else 'on the GPU'}, budget "
            f"{budget:.0f} s, output {out}")
    for name in args.only or ORDER:
        cap = SECTIONS[name][2 if args.dry_run else 1]
        left = budget - (time.monotonic() - start)
        if name == "property_suite":
            cap = max(cap, left) if not args.dry_run else cap
        cap = min(cap, left)
        if cap < 5:
            doc["sections"][name] = {"status": "skipped", "error": "no time left"}
            continue
        ctx.log(f"== {name} (cap {cap:.0f} s)")
        rec = (run_isolated if isolate else run_in_process)(name, ctx, cap)
        doc["sections"][name] = rec
        ctx.log(f"== {name}: {rec['status']} in {rec['seconds']:.1f} s"
                + (f" ({rec['error']})" if rec.get("error") else ""))
        (out / f"{stem}.json").write_text(json.dumps(doc, indent=1, default=str))
    doc["seconds"] = round(time.monotonic() - start, 1)
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1, default=str))
    ctx.log("\n" + tables(doc))
    ctx.log(f"\n{len(doc['sections'])} sections in {doc['seconds']:.0f} s; "
            f"{out / stem}.json and .log")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
