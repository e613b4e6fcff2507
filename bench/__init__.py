"""Benchmarks: `make bench` runs every bench_<part>.py and prints the figures side by side."""
