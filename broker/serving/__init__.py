"""Model serving: registered model versions served as a workload and reached through the broker."""
