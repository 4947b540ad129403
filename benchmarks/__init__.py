"""Benchmarks that show the runtime is invisible next to the model (``python -m benchmarks``)."""
