"""The ``ray`` cluster kind: one Ray job per attempt, gang-started by :mod:`runtimes.ray_launcher`."""
