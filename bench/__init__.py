"""`make bench`: benchmarks run side by side in one run (not tests)."""
