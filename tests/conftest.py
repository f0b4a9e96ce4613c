"""Suite-wide settings.

Hypothesis explores fresh random examples on every local run; that is how
the cluster machine found the self-removal liveness bug. In CI (CI=true) it
runs derandomized: the same examples every time, so a merge is judged on
the code, not on the luck of a draw. New counterexamples are found locally
(and by `make sweep`), then pinned as regression tests.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")
