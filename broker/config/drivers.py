"""Is the database driver ``database_url`` names installed? Say so before SQLAlchemy raises ImportError."""

from __future__ import annotations

from broker.config.errors import ConfigError

#: Driver package → the extra of submarine-broker that installs it.
EXTRAS = {"psycopg": "postgres"}


def check_database_driver(url: str, source: str = "broker.yaml") -> None:
    """Raise :class:`ConfigError` (key ``database_url``) when the URL is malformed or its driver
    package is missing. Messages never repeat the URL: it may hold a password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except NoSuchModuleError:  # a subclass of ArgumentError
        raise ConfigError(source, "unknown database dialect or driver", key="database_url") from None
    except (ArgumentError, ValueError):
        raise ConfigError(
            source, "not a database URL (dialect+driver://user:password@host/database)", key="database_url"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        package = (exc.name or parsed.get_driver_name()).split(".")[0]
        extra = EXTRAS.get(package)
        how = f"pip install 'submarine-broker[{extra}]'" if extra else f"pip install {package}"
        raise ConfigError(
            source,
            f"the {parsed.drivername} driver needs the {package} package, which is not installed: {how}",
            key="database_url",
        ) from None
