"""Evaluation of code models: sampling, sandboxed execution and pass@k."""
