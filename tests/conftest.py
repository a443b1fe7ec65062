"""Shared by every test folder: pytest puts this folder on sys.path, so `images` imports."""

import gc
import os
import shutil

import pytest

# The service compiles its CPU LRL by default, which adds tens of seconds to a start
# (docs/benchmarks.md, "Compile time"); the suite
# starts it dozens of times, so it runs eager unless a test asks for the compiled path
# (tests/e2e/test_e2e_compiled.py, tests/model/test_compiled_lrl.py).
os.environ.setdefault("ABPN_COMPILE_LRL", "false")


@pytest.fixture(scope="session")
def cxx_compiler() -> str:
    """The C++ compiler TorchInductor builds the compiled LRL with, or a skip (a failure in
    CI, where .ci/run installs one)."""
    found = shutil.which("g++") or shutil.which("c++")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but no C++ compiler: .ci/run installs g++ in CI")
        pytest.skip("the compiled LRL needs a C++ compiler (apt-get install g++)")
    return found


@pytest.fixture(autouse=True)
def _heap_unfrozen():
    """Every test starts and ends with nothing frozen: an app that reached readiness froze the
    pytest process's heap (`gc.freeze()` in service/runtime.py), which would otherwise carry
    over into whichever test runs next."""
    gc.unfreeze()
    yield
    gc.unfreeze()
