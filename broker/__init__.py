"""Submarine Broker: the Apache Submarine server as a multi-cluster federation broker."""

__version__ = "0.1.0"
