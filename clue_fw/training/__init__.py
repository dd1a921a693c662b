"""Training: checkpoints, the epoch loop and the stage drivers."""
