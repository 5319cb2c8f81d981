"""Benchmarks of the real service started locally (``make bench`` → ``python -m bench.run_all``)."""
