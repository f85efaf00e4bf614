"""The broker's database: models, engine, migrations."""
