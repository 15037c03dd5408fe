"""Benchmarks of vbkernels (not part of the test suite): ``python -m bench`` writes the
report, ``pytest bench/ --benchmark-only`` runs the pytest-benchmark suite."""
