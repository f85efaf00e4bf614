"""Experiments: validation, the service behind the REST handlers, and their JSON views."""
