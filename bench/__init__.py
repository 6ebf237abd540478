"""Benchmarks: `make bench` runs them all. Each prints its figures and exits non-zero past its bound."""
