"""Configuration of a ``local`` cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from clusters.config import ClusterConfig


class LocalClusterConfig(ClusterConfig):
    """``kind: local``: runs replicas as subprocesses on this host.

    ``work_dir`` holds each attempt's folder (replica logs, pid and exit files); by default
    ``<data_dir>/clusters/<name>``. Several local clusters may share a host with different
    names, capacities and work directories.
    """

    kind: Literal["local"] = "local"
    work_dir: Path | None = Field(default=None, description="Default: <data_dir>/clusters/<name>")
