"""Notebook sessions: the service, the JSON views, the readiness/idle watch and the proxy."""
