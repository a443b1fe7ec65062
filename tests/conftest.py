"""Shared by every test folder: pytest puts this folder on sys.path, so `images` imports."""

import os

# The service compiles its CPU LRL by default, which adds 15-50 s to every start; the suite
# starts it dozens of times, so it runs eager unless a test asks for the compiled path
# (tests/e2e/test_e2e_startup.py, tests/model/test_compiled_lrl.py).
os.environ.setdefault("ABPN_COMPILE_LRL", "false")
