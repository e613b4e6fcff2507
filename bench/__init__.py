"""Benchmarks: `make bench` runs every bench_<part>.py and prints the figures side by side."""

import os

# The benches' synthetic patients have NHS test numbers, which a live installation refuses.
os.environ.setdefault("NCCID_ACCEPT_TEST_NUMBERS", "true")
