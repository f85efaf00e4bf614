"""Batch-queue cluster kinds (Slurm, YARN) and their shared family base."""
