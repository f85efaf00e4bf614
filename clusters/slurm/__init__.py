"""Slurm clusters: one attempt is one batch job (``cli`` commands or slurmrestd ``rest``)."""
