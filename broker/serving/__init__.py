"""Model serving: served registered model versions (workloads of kind ``serve``)."""
