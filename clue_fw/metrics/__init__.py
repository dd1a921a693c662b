"""Metrics computed from additive statistics, so totals stay exact across batches."""
