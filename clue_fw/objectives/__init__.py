"""Pre-training objectives (family ``objective``)."""
