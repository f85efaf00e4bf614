"""The artifact store broker.yaml's ``artifacts:`` section asks for."""

from __future__ import annotations

import importlib.util

from broker.artifacts.folder import FolderStore
from broker.artifacts.s3 import S3Store
from broker.artifacts.store import ArtifactStore
from broker.config import ConfigError
from broker.config.models import BrokerConfig


def open_artifact_store(config: BrokerConfig, *, file: str = "broker.yaml") -> ArtifactStore:
    """The folder store (made if missing, 0700) or the S3 store; ConfigError naming the key when
    it cannot be built. Nothing is sent to object storage here: an outage at start does not stop
    the broker, it answers 503 on artifact calls until the store is back."""
    settings = config.artifacts
    if settings.backend == "s3":
        if importlib.util.find_spec("boto3") is None:
            raise ConfigError(
                file, "backend s3 needs boto3: pip install 'submarine-broker[s3]'", key="artifacts.backend"
            )
        assert settings.bucket is not None  # the config model requires it for s3
        return S3Store(
            settings.bucket,
            prefix=settings.prefix,
            endpoint_url=settings.endpoint_url,
            region=settings.region,
        )
    try:
        return FolderStore(config.artifacts_path)
    except OSError as exc:
        raise ConfigError(
            file, f"cannot make the artifact folder: {exc.strerror}", key="artifacts.path"
        ) from None
