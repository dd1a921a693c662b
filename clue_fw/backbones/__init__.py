"""Sequence encoders (family ``backbone``)."""
