"""Benchmarks: run with `python -m benchmarks.<name>`; they print numbers."""
