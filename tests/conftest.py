"""Suite-wide settings. Fixtures live next to the tests that use them."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Shared, noisy 2-core machines: no per-example deadline (timing is for bench/, not tests).
settings.register_profile(
    "default", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
