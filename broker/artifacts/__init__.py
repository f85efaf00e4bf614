"""MLflow artifacts: the store (a folder or an S3 bucket) and who may reach which path."""

from broker.artifacts.store import (
    ArtifactBlob,
    ArtifactError,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactStoreUnavailable,
    FileInfo,
    InvalidArtifactPath,
    clean_path,
)

__all__ = [
    "ArtifactBlob",
    "ArtifactError",
    "ArtifactNotFound",
    "ArtifactStore",
    "ArtifactStoreUnavailable",
    "FileInfo",
    "InvalidArtifactPath",
    "clean_path",
]
