"""Peer systems the benchmarks compare against, each run in its own environment by subprocess."""
