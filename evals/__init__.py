"""Scenarios and model organisms (declarative specs + data), ground-truth grading and
the benchmark runner."""
