"""Simulated-click evaluation (RITM / SimpleClick protocol) and latency benchmarks.

Numpy / scipy only at import time: the engine (torch) is handed in by the caller.
"""
