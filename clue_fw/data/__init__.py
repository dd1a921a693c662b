"""Data: readers, the data root, the synthetic generator and downloads."""
