"""The ``submarine-broker`` command line."""
