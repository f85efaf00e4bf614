"""Version stages: Submarine's four names, MLflow's ``Staging`` read as ``Developing``."""

from __future__ import annotations

from broker.errors import BadRequest

NONE = "None"
DEVELOPING = "Developing"
PRODUCTION = "Production"
ARCHIVED = "Archived"
#: The stored (canonical) stage names, in Submarine's order.
STAGES = (NONE, DEVELOPING, PRODUCTION, ARCHIVED)
#: Stages ``archive_existing`` applies to (MLflow's rule: only the "live" ones).
LIVE = (DEVELOPING, PRODUCTION)
_BY_LOWER = {s.lower(): s for s in STAGES} | {"staging": DEVELOPING}


def canonical_stage(text: str, field: str = "stage") -> str:
    """The stored name of ``text`` (any case; ``Staging`` is ``Developing``); 400 naming ``field``."""
    found = _BY_LOWER.get(text.strip().lower()) if isinstance(text, str) else None
    if found is None:
        shown = repr(text)[:60]
        raise BadRequest(
            f"{field}: invalid stage {shown}: expected one of {', '.join(STAGES)} (or Staging)",
            field=field,
        )
    return found
