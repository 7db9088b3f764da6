"""Benchmark harness: amber against its peers on ~1 GiB of transformer-shaped weights.

Run with ``python -m benchmarks`` (or ``make bench``); ``--help`` lists the options.
"""
