"""The ``kubernetes`` cluster kind: Kubeflow training jobs or Indexed Jobs, via the official client."""
