"""Benchmarks: jaxstyle against an equivalent PyTorch implementation (see benchmarks/run.py)."""
