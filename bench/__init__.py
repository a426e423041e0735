"""Benchmarks (not tests): each script prints its figures. Run ``python -m bench.<name>``."""
