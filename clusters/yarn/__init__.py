"""The ``yarn`` cluster kind: each attempt is one YARN Service (the ResourceManager's Services API)."""
