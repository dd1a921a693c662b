"""Downstream heads (family ``head``): one task's examples, loss and metrics."""
