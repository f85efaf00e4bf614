"""Experiment tracking: MLflow's experiments, runs, metrics, params, tags and logged models, kept by
the broker and attached to its workloads (each experiment attempt is a run)."""
