"""broker.yaml and clusters.d/*.yaml: models, loading, ``${ENV}`` interpolation, readable errors."""

from broker.config.errors import ConfigError
from broker.config.loader import load_broker_config, load_cluster_file, load_clusters_dir
from broker.config.models import BrokerConfig, LoopsConfig

__all__ = [
    "BrokerConfig",
    "ConfigError",
    "LoopsConfig",
    "load_broker_config",
    "load_cluster_file",
    "load_clusters_dir",
]
