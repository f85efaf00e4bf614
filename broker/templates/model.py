"""The templates table: one row per experiment template, its spec as Submarine's JSON."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from broker.store.models import Base, BigId


class TemplateRow(Base):
    """An experiment template; ``namespace`` is the team it belongs to, ``shared`` lets every team
    read it. Names are unique across teams (Submarine's clients name a template alone)."""

    __tablename__ = "experiment_template"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    namespace: Mapped[str] = mapped_column(String(63), index=True)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    owner: Mapped[str] = mapped_column(String(128))
    #: name, author, description, parameters, experimentSpec (namespace and shared are columns).
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
