"""Alembic environment: the engine comes from the caller (see broker.store.migrate)."""

from alembic import context

import broker.environments.model  # noqa: F401 - its tables belong to the metadata too
import broker.model_registry.model  # noqa: F401 - its tables belong to the metadata too
import broker.templates.model  # noqa: F401 - its table belongs to the metadata too
import broker.tracking.model  # noqa: F401 - its tables belong to the metadata too
import broker.workloads.model  # noqa: F401 - its tables belong to the metadata too
from broker.store.models import Base

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
