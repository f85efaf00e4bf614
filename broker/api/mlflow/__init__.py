"""The MLflow tracking REST API (``/api/2.0/mlflow/...``, also under ``/ajax-api/2.0/mlflow/``):
experiments, runs, logging, metric history and MLflow 3's logged models, on the broker's tracking
store (:mod:`broker.tracking`), and the model registry (registered models, versions, aliases) on
:mod:`broker.model_registry`. See ../shared/reference/mlflow-rest.md §4.

:data:`routes` lists every route; unknown paths under the MLflow prefixes answer MLflow's 404
``ENDPOINT_NOT_FOUND`` (traces, workspaces and the GenAI endpoints among them).
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from broker.api.mlflow import (
    experiments,
    logged_models,
    logging,
    misc,
    model_versions,
    registered_models,
    runs,
)

GET, POST, PATCH, DELETE = ["GET"], ["POST"], ["PATCH"], ["DELETE"]
ANY = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
PREFIXES = ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/")

#: (path under the prefix, endpoint, methods)
ENDPOINTS = [
    ("experiments/create", experiments.create, POST),
    ("experiments/get", experiments.get, GET),
    ("experiments/get-by-name", experiments.get_by_name, GET),
    ("experiments/search", experiments.search, POST + GET),
    ("experiments/list", experiments.search, GET),
    ("experiments/update", experiments.update, POST),
    ("experiments/delete", experiments.delete, POST),
    ("experiments/restore", experiments.restore, POST),
    ("experiments/set-experiment-tag", experiments.set_tag, POST),
    ("experiments/delete-experiment-tag", experiments.delete_tag, POST),
    ("runs/create", runs.create, POST),
    ("runs/get", runs.get, GET),
    ("runs/update", runs.update, POST),
    ("runs/delete", runs.delete, POST),
    ("runs/restore", runs.restore, POST),
    ("runs/search", runs.search, POST + GET),
    ("runs/log-metric", logging.log_metric, POST),
    ("runs/log-parameter", logging.log_param, POST),
    ("runs/set-tag", logging.set_tag, POST),
    ("runs/delete-tag", logging.delete_tag, POST),
    ("runs/log-batch", logging.log_batch, POST),
    ("runs/log-inputs", runs.log_inputs, POST),
    ("runs/outputs", runs.outputs, POST),
    ("metrics/get-history", logging.get_history, GET),
    ("metrics/get-history-bulk-interval", logging.get_history_bulk_interval, GET),
    ("logged-models", logged_models.create, POST),
    ("logged-models/search", logged_models.search, POST),
    ("logged-models/{model_id}", logged_models.get, GET),
    ("logged-models/{model_id}", logged_models.finalize, PATCH),
    ("logged-models/{model_id}", logged_models.delete, DELETE),
    ("logged-models/{model_id}/tags", logged_models.set_tags, PATCH),
    ("logged-models/{model_id}/tags/{tag_key:path}", logged_models.delete_tag, DELETE),
    ("logged-models/{model_id}/params", logged_models.log_params, POST),
    ("registered-models/create", registered_models.create, POST),
    ("registered-models/get", registered_models.get, GET),
    ("registered-models/update", registered_models.update, PATCH),
    ("registered-models/rename", registered_models.rename, POST),
    ("registered-models/delete", registered_models.delete, DELETE),
    ("registered-models/search", registered_models.search, GET + POST),
    ("registered-models/get-latest-versions", registered_models.latest_versions, POST + GET),
    ("registered-models/set-tag", registered_models.set_tag, POST),
    ("registered-models/delete-tag", registered_models.delete_tag, DELETE),
    ("registered-models/alias", registered_models.set_alias, POST),
    ("registered-models/alias", registered_models.delete_alias, DELETE),
    ("registered-models/alias", registered_models.get_by_alias, GET),
    ("model-versions/create", model_versions.create, POST),
    ("model-versions/get", model_versions.get, GET),
    ("model-versions/update", model_versions.update, PATCH),
    ("model-versions/delete", model_versions.delete, DELETE),
    ("model-versions/search", model_versions.search, GET + POST),
    ("model-versions/get-download-uri", model_versions.download_uri, GET),
    ("model-versions/transition-stage", model_versions.transition_stage, POST),
    ("model-versions/set-tag", model_versions.set_tag, POST),
    ("model-versions/delete-tag", model_versions.delete_tag, DELETE),
]

routes: list[BaseRoute] = [
    *(
        Route(prefix + path, handler, methods=methods)
        for prefix in PREFIXES
        for path, handler, methods in ENDPOINTS
    ),
    *(
        Route(f"{base}/3.0/mlflow/server-info", misc.server_info, methods=GET)
        for base in ("/api", "/ajax-api")
    ),
    *(
        Route(f"{base}/{version}/mlflow/{{rest:path}}", misc.not_served, methods=ANY)
        for base in ("/api", "/ajax-api")
        for version in ("2.0", "3.0")
    ),
]
