"""The model registry: registered models, their immutable versions, aliases, stages and an
audited history of every change, shared by Submarine's and MLflow's registry APIs."""
