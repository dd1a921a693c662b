"""Baselines that need no training, evaluated exactly like the heads they compare with."""
