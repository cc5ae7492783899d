"""Benchmarks: the project's engines against plain dense PyTorch references."""
