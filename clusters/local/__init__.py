"""The ``local`` kind: replicas as process groups on the broker's own host."""
