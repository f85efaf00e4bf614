"""The REST layer: Submarine's ``/api/v1`` paths and envelope, plus the broker's own endpoints."""
