"""Shared test configuration: hypothesis profiles and backend fixtures.

Profiles (select with NEWTONKIT_HYPOTHESIS_PROFILE):
- ``ci`` (default): 100 examples per property, derandomized, no deadline (CI machines are slow
  and shared, so timing-based flakiness is ruled out), no example database writes.
- ``dev``: 25 examples, for quick local iteration.
- ``soak``: 5,000 examples per property, random seeds, for long runs.
- ``mutation``: as ``ci`` without shrinking (tests/mutation_check.py counts failures only).

Device: ``NEWTONKIT_TEST_DEVICE=cuda`` puts the generated torch cases on the GPU and adds CuPy
as a backend (``tests/strategies.py``; ``docs/gpu.md``); the default ``cpu`` changes nothing.
The header of every run names the device and the backends.
"""

import os

from hypothesis import HealthCheck, Phase, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                    HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=100, derandomize=True, database=None,
                          print_blob=True, **_COMMON)
settings.register_profile("dev", max_examples=25, **_COMMON)
settings.register_profile("soak", max_examples=5000, print_blob=True, **_COMMON)
settings.register_profile("mutation", max_examples=100, derandomize=True, database=None,
                          phases=[Phase.explicit, Phase.generate], **_COMMON)
settings.load_profile(os.environ.get("NEWTONKIT_HYPOTHESIS_PROFILE", "ci"))


def pytest_report_header(config):
    from strategies import BACKENDS, DEVICE

    return f"newtonkit test device: {DEVICE}; backends: {', '.join(BACKENDS)}"
