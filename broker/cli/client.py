"""A small typed REST client for the broker's Submarine 0.8.0-compatible API (``{url}/api/v1``).

Every answer is the Submarine envelope ``{"status", "code", "success", "message", "result",
"attributes"}``. :class:`BrokerClient` unwraps it and returns ``result``; an error envelope, a
non-JSON body or a transport failure becomes a :class:`BrokerError`, so callers never see httpx.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeAlias
from urllib.parse import quote

import httpx

from broker import __version__

JSONObject: TypeAlias = dict[str, Any]

DEFAULT_URL = "http://127.0.0.1:8080"
API_PREFIX = "/api/v1"
#: Statuses after which an experiment never changes again.
TERMINAL_STATUSES = frozenset({"Succeeded", "Failed", "Deleted"})


class BrokerError(Exception):
    """The broker answered with an error envelope, or its answer could not be understood.

    ``problems`` are the envelope's ``attributes.errors`` (``{field, problem}`` items): every
    field a refused request got wrong.
    """

    def __init__(self, code: int, message: str, problems: list[JSONObject] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.problems = list(problems or [])

    def __str__(self) -> str:
        return self.message


class NotFound(BrokerError):
    """HTTP 404: the experiment or cluster is unknown (or the experiment was deleted)."""


class BrokerUnreachable(BrokerError):
    """No HTTP answer at all: connection refused, DNS failure, timeout, bad protocol."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(0, f"cannot reach the broker at {url}: {reason}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class Page:
    """One page of ``GET /experiment``: the items and the paging ``attributes``."""

    items: list[JSONObject]
    total: int | None = None
    page: int | None = None
    page_size: int | None = None
    attributes: JSONObject = field(default_factory=dict)


def api_base(url: str) -> str:
    """``http://host:8080`` or ``http://host:8080/api/v1`` → ``http://host:8080/api/v1``."""
    base = url.strip().rstrip("/")
    return base if base.endswith(API_PREFIX) else base + API_PREFIX


def _segment(value: str) -> str:
    return quote(value, safe="")


def _snippet(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def _problems(envelope: JSONObject) -> list[JSONObject]:
    """The ``{field, problem}`` items of an error envelope's ``attributes.errors`` (others dropped)."""
    attributes = envelope.get("attributes")
    found = attributes.get("errors") if isinstance(attributes, dict) else None
    if not isinstance(found, list):
        return []
    return [
        item
        for item in found
        if isinstance(item, dict) and all(isinstance(item.get(k), str) for k in ("field", "problem"))
    ]


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class BrokerClient:
    """Synchronous client for one broker. Cheap to create; the HTTP pool opens on first use."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.strip().rstrip("/") or DEFAULT_URL
        self.token = token or None
        self.timeout = timeout
        self._transport = transport
        self._http: httpx.Client | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool (safe to call more than once)."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _client(self) -> httpx.Client:
        if self._http is None:
            headers = {"Accept": "application/json", "User-Agent": f"submarine-broker-cli/{__version__}"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            try:
                self._http = httpx.Client(
                    base_url=api_base(self.url),
                    headers=headers,
                    timeout=self.timeout,
                    transport=self._transport,
                )
            except (httpx.InvalidURL, ValueError, TypeError) as exc:
                raise BrokerError(0, f"invalid broker URL {self.url!r}: {exc}") from None
        return self._http

    # -- transport -----------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[Any, JSONObject]:
        """Send one request; return the envelope's ``(result, attributes)`` or raise BrokerError.
        ``timeout`` replaces the client's for this request (a call that waits for work)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        wait = timeout if timeout is not None else self.timeout
        try:
            response = self._client().request(
                method, path, params=query or None, json=body, headers=headers, timeout=wait
            )
        except httpx.TimeoutException:
            raise BrokerUnreachable(self.url, f"no answer within {wait:g}s") from None
        except httpx.TransportError as exc:
            raise BrokerUnreachable(self.url, str(exc) or type(exc).__name__) from None
        except httpx.InvalidURL as exc:
            raise BrokerError(0, f"invalid broker URL {self.url!r}: {exc}") from None
        return self._decode(response)

    def _decode(self, response: httpx.Response) -> tuple[Any, JSONObject]:
        http_code = response.status_code
        try:
            envelope = response.json()
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict) or not {"status", "code", "result", "message"} & envelope.keys():
            what = "an empty body" if not response.content else f"a non-JSON body: {_snippet(response.text)}"
            if envelope is not None:
                what = "JSON that is not a Submarine envelope"
            error = NotFound if http_code == 404 else BrokerError
            raise error(http_code, f"the broker at {self.url} answered HTTP {http_code} with {what}")
        code = _int_or_none(envelope.get("code"))
        if http_code >= 400 or (code is not None and code >= 400) or envelope.get("success") is False:
            code = http_code if http_code >= 400 else (code or http_code)
            message = envelope.get("message")
            if not isinstance(message, str) or not message.strip():
                message = f"HTTP {code} {envelope.get('status') or response.reason_phrase}".strip()
            raise (NotFound if code == 404 else BrokerError)(code, message, _problems(envelope))
        attributes = envelope.get("attributes")
        return envelope.get("result"), attributes if isinstance(attributes, dict) else {}

    def _object(self, method: str, path: str, **kwargs: Any) -> JSONObject:
        result, _ = self._call(method, path, **kwargs)
        if not isinstance(result, dict):
            raise BrokerError(0, f"unexpected answer to {method} {path}: expected an object")
        return result

    def _list(self, path: str, **kwargs: Any) -> tuple[list[JSONObject], JSONObject]:
        result, attributes = self._call("GET", path, **kwargs)
        if result is None:
            result = []
        if not isinstance(result, list):
            raise BrokerError(0, f"unexpected answer to GET {path}: expected a list")
        return [item for item in result if isinstance(item, dict)], attributes

    # -- tracking ------------------------------------------------------------------------------
    def _absolute(self, path: str) -> str:
        """A URL outside ``/api/v1`` (Submarine's ``/api/metric``, MLflow's APIs)."""
        return f"{self.url}{path}"

    def experiment_metrics(self, experiment_id: str, key: str | None = None) -> list[JSONObject]:
        """Every metric point of an experiment (all attempts), Submarine's shape."""
        items, _ = self._list(self._absolute("/api/metric"), params={"id": experiment_id, "key": key})
        return items

    def experiment_params(self, experiment_id: str) -> list[JSONObject]:
        items, _ = self._list(self._absolute("/api/param"), params={"id": experiment_id})
        return items

    def experiment_artifacts(self, experiment_id: str) -> tuple[list[str], str | None]:
        """The artifact paths of the experiment's current attempt, and where they are in the
        artifact API (``<exp>/<run>/artifacts``; None before its first dispatch)."""
        result, attributes = self._call("GET", f"/experiment/artifacts/{experiment_id}")
        location = attributes.get("location")
        paths = [p for p in result or [] if isinstance(p, str)]
        return paths, location if isinstance(location, str) else None

    def download(self, path: str, out: Any) -> int:
        """Stream the artifact at proxy ``path`` into the binary file ``out``; returns its size."""
        url = self._absolute(f"/api/2.0/mlflow-artifacts/artifacts/{path}")
        size = 0
        try:
            with self._client().stream("GET", url) as response:
                if response.status_code != 200:
                    response.read()
                    try:
                        message = response.json().get("message") or response.text
                    except ValueError:
                        message = response.text
                    error = NotFound if response.status_code == 404 else BrokerError
                    raise error(response.status_code, f"cannot download {path}: {message}")
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)
                    size += len(chunk)
        except httpx.TransportError as exc:
            raise BrokerUnreachable(self.url, str(exc) or type(exc).__name__) from None
        return size

    # -- experiments ---------------------------------------------------------------------------
    def submit_experiment(self, spec: JSONObject, idempotency_key: str | None = None) -> JSONObject:
        """``POST /experiment``: submit an ExperimentSpec; returns the new Experiment."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._object("POST", "/experiment", body=spec, headers=headers)

    def submit_from_template(
        self, name: str, params: dict[str, str], idempotency_key: str | None = None
    ) -> JSONObject:
        """``POST /experiment/{name}``: an experiment from template ``name`` with ``params``."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        body = {"name": name, "params": params}
        return self._object("POST", f"/experiment/{_segment(name)}", body=body, headers=headers)

    # -- experiment templates ------------------------------------------------------------------
    def list_templates(self) -> list[JSONObject]:
        """``GET /template``: the templates the caller may read (``experimentTemplateSpec`` each)."""
        items, _ = self._list("/template")
        return items

    def get_template(self, name: str) -> JSONObject:
        """``GET /template/{name}``; :class:`NotFound` when unknown (or another team's)."""
        return self._object("GET", f"/template/{_segment(name)}")

    def create_template(self, spec: JSONObject) -> JSONObject:
        """``POST /template``: store an ExperimentTemplateSpec."""
        return self._object("POST", "/template", body=spec)

    def delete_template(self, name: str) -> JSONObject:
        """``DELETE /template/{name}``."""
        return self._object("DELETE", f"/template/{_segment(name)}")

    def list_experiments(
        self,
        status: str | None = None,
        page: int | None = None,
        page_size: int | None = None,
        *,
        name: str | None = None,
        namespace: str | None = None,
    ) -> Page:
        """``GET /experiment``: one page of experiments, optionally filtered by status, and by exact
        name and namespace (broker extensions)."""
        params = {"status": status, "page": page, "pageSize": page_size, "name": name, "namespace": namespace}
        items, attrs = self._list("/experiment", params=params)
        return Page(
            items=items,
            total=_int_or_none(attrs.get("total")),
            page=_int_or_none(attrs.get("page")),
            page_size=_int_or_none(attrs.get("pageSize")),
            attributes=attrs,
        )

    def get_experiment(self, experiment_id: str) -> JSONObject:
        """``GET /experiment/{id}``; :class:`NotFound` when unknown or deleted."""
        return self._object("GET", f"/experiment/{_segment(experiment_id)}")

    def patch_experiment(self, experiment_id: str, spec: JSONObject) -> JSONObject:
        """``PATCH /experiment/{id}``: a new spec while Accepted, else new ``meta.tags`` only."""
        return self._object("PATCH", f"/experiment/{_segment(experiment_id)}", body=spec)

    def delete_experiment(self, experiment_id: str) -> JSONObject:
        """``DELETE /experiment/{id}``; returns the experiment with status ``Deleted``."""
        return self._object("DELETE", f"/experiment/{_segment(experiment_id)}")

    def stop_experiment(self, experiment_id: str) -> JSONObject:
        """``POST /experiment/{id}/stop``; the experiment ends Failed with category ``killed``."""
        return self._object("POST", f"/experiment/{_segment(experiment_id)}/stop")

    def experiment_logs(
        self, experiment_id: str, replica: str | None = None, tail: int | None = None, deleted: bool = False
    ) -> JSONObject:
        """``GET /experiment/logs/{id}``: ``{"experimentId", "logContent": [{"podName", "podLog"}]}``;
        ``deleted`` reads a deleted experiment's logs too."""
        params = {"replica": replica, "tail": tail, "deleted": "true" if deleted else None}
        return self._object("GET", f"/experiment/logs/{_segment(experiment_id)}", params=params)

    def experiment_events(self, experiment_id: str) -> list[JSONObject]:
        """``GET /experiment/{id}/events``: the status history, oldest first."""
        items, _ = self._list(f"/experiment/{_segment(experiment_id)}/events")
        return items

    # -- notebooks -----------------------------------------------------------------------------
    # -- served models -------------------------------------------------------------------------
    def create_serve(self, spec: JSONObject) -> JSONObject:
        """``POST /serve``: serve a registered version (``modelName`` + ``modelVersion`` or ``alias``)."""
        return self._object("POST", "/serve", body=spec)

    def list_serves(self, status: str | None = None) -> list[JSONObject]:
        """``GET /serve``: the serves the caller may see, newest first."""
        items, _ = self._list("/serve", params={"status": status})
        return items

    def get_serve(self, serve_id: str) -> JSONObject:
        """``GET /serve/{id}``; :class:`NotFound` when unknown or deleted."""
        return self._object("GET", f"/serve/{_segment(serve_id)}")

    def serve_events(self, serve_id: str) -> list[JSONObject]:
        """``GET /serve/{id}/events``: the serve's history, oldest first."""
        items, _ = self._list(f"/serve/{_segment(serve_id)}/events")
        return items

    def update_serve(self, serve_id: str, change: JSONObject) -> JSONObject:
        """``PATCH /serve/{id}``: roll out ``{"modelVersion": N}`` or ``{"alias": "..."}``."""
        return self._object("PATCH", f"/serve/{_segment(serve_id)}", body=change)

    def serve_action(self, serve_id: str, action: str) -> JSONObject:
        """``POST /serve/{id}/stop`` or ``/start``."""
        return self._object("POST", f"/serve/{_segment(serve_id)}/{action}")

    def delete_serve(self, serve_id: str) -> JSONObject:
        """``DELETE /serve/{id}``: stop its model servers and remove it."""
        return self._object("DELETE", f"/serve/{_segment(serve_id)}")

    def predict(self, path: str, body: bytes, content_type: str) -> httpx.Response:
        """``POST <path>invocations`` through the broker's serve proxy (``path`` is the serve's
        ``url``, ``/serve/<namespace>/<name>/``): the model server's own answer, not an envelope."""
        root = self.url.rstrip("/").removesuffix(API_PREFIX)
        try:
            return self._client().post(
                root + path + "invocations", content=body, headers={"Content-Type": content_type}
            )
        except httpx.TransportError as exc:
            raise BrokerUnreachable(self.url, str(exc) or type(exc).__name__) from None

    def create_notebook(self, spec: JSONObject) -> JSONObject:
        """``POST /notebook``: create a notebook from a NotebookSpec; returns the Notebook."""
        return self._object("POST", "/notebook", body=spec)

    def list_notebooks(self, status: str | None = None) -> list[JSONObject]:
        """``GET /notebook``: the notebooks the caller may see, newest first."""
        items, _ = self._list("/notebook", params={"status": status})
        return items

    def get_notebook(self, notebook_id: str) -> JSONObject:
        """``GET /notebook/{id}``; :class:`NotFound` when unknown or deleted."""
        return self._object("GET", f"/notebook/{_segment(notebook_id)}")

    def delete_notebook(self, notebook_id: str) -> JSONObject:
        """``DELETE /notebook/{id}``: stop its server and remove it (status ``terminating``)."""
        return self._object("DELETE", f"/notebook/{_segment(notebook_id)}")

    def stop_notebook(self, notebook_id: str) -> JSONObject:
        """``POST /notebook/{id}/stop``: stop its server, keep the notebook."""
        return self._object("POST", f"/notebook/{_segment(notebook_id)}/stop")

    def start_notebook(self, notebook_id: str) -> JSONObject:
        """``POST /notebook/{id}/start``: start a stopped notebook again."""
        return self._object("POST", f"/notebook/{_segment(notebook_id)}/start")

    def notebook_logs(self, notebook_id: str, tail: int | None = None) -> JSONObject:
        """``GET /notebook/{id}/logs``: the Jupyter server's output, ``{"notebookId", "logContent"}``."""
        return self._object("GET", f"/notebook/{_segment(notebook_id)}/logs", params={"tail": tail})

    def notebook_events(self, notebook_id: str) -> list[JSONObject]:
        """``GET /notebook/{id}/events``: the status history, oldest first."""
        items, _ = self._list(f"/notebook/{_segment(notebook_id)}/events")
        return items

    def sign_in_link(self, next_path: str) -> JSONObject:
        """``POST /login/once``: a one-time link (``url``, a path of the broker; ``expiresInSeconds``)
        that signs a browser in with this client's token, then opens ``next_path``."""
        return self._object("POST", "/login/once", body={"next": next_path})

    # -- model registry ------------------------------------------------------------------------
    def list_models(self) -> list[JSONObject]:
        """``GET /registered-model``: every model the caller may read, by name."""
        items, _ = self._list("/registered-model")
        return items

    def get_model(self, name: str) -> JSONObject:
        """``GET /registered-model/{name}``; :class:`NotFound` when unknown (or another team's)."""
        return self._object("GET", f"/registered-model/{_segment(name)}")

    def delete_model(self, name: str) -> None:
        """``DELETE /registered-model/{name}``: refused (406) while a version is in Production."""
        self._call("DELETE", f"/registered-model/{_segment(name)}")

    def model_versions(self, name: str) -> list[JSONObject]:
        """``GET /model-version/{name}``: the model's versions, oldest first."""
        items, _ = self._list(f"/model-version/{_segment(name)}")
        return items

    def get_model_version(self, name: str, version: int) -> JSONObject:
        """``GET /model-version/{name}/{version}``."""
        return self._object("GET", f"/model-version/{_segment(name)}/{int(version)}")

    def delete_model_version(self, name: str, version: int) -> None:
        """``DELETE /model-version/{name}/{version}``."""
        self._call("DELETE", f"/model-version/{_segment(name)}/{int(version)}")

    def model_history(self, name: str, version: int | None = None) -> list[JSONObject]:
        """The audited changes of a model (or of one version), oldest first."""
        path = f"/registered-model/{_segment(name)}/history"
        if version is not None:
            path = f"/model-version/{_segment(name)}/{int(version)}/history"
        items, _ = self._list(path)
        return items

    def promote_model_version(
        self, name: str, version: int, stage: str, message: str = "", archive_existing: bool = False
    ) -> None:
        """``PATCH /model-version``: move the version to ``stage``, recording ``message``."""
        body = {
            "name": name,
            "version": int(version),
            "currentStage": stage,
            "message": message,
            "archiveExisting": archive_existing,
        }
        self._call("PATCH", "/model-version", body=body)

    def set_model_alias(self, name: str, alias: str, version: int) -> None:
        """``POST /registered-model/{name}/alias``: point ``alias`` at ``version``."""
        self._call(
            "POST",
            f"/registered-model/{_segment(name)}/alias",
            params={"alias": alias, "version": int(version)},
        )

    def delete_model_alias(self, name: str, alias: str) -> None:
        """``DELETE /registered-model/{name}/alias``."""
        self._call("DELETE", f"/registered-model/{_segment(name)}/alias", params={"alias": alias})

    def set_model_tag(self, name: str, key: str, value: str = "", version: int | None = None) -> None:
        """Tag the model (or one version): ``POST /registered-model/tag`` or ``/model-version/tag``."""
        if version is None:
            self._call("POST", "/registered-model/tag", params={"name": name, "tag": key, "value": value})
        else:
            params = {"name": name, "version": int(version), "tag": key, "value": value}
            self._call("POST", "/model-version/tag", params=params)

    def delete_model_tag(self, name: str, key: str, version: int | None = None) -> None:
        """Remove a tag from the model (or one version); :class:`NotFound` when it has none such."""
        if version is None:
            self._call("DELETE", "/registered-model/tag", params={"name": name, "tag": key})
        else:
            params = {"name": name, "version": int(version), "tag": key}
            self._call("DELETE", "/model-version/tag", params=params)

    # -- clusters ------------------------------------------------------------------------------
    # Environments

    def list_environments(self) -> list[JSONObject]:
        """``GET /environment``: every environment the caller may read, by name."""
        items, _ = self._list("/environment")
        return items

    def get_environment(self, name: str) -> JSONObject:
        """``GET /environment/{name}`` (with its builds); :class:`NotFound` when unknown."""
        return self._object("GET", f"/environment/{_segment(name)}")

    def create_environment(self, spec: JSONObject) -> JSONObject:
        """``POST /environment``: a new environment (409 when the name is taken)."""
        return self._object("POST", "/environment", body=spec)

    def update_environment(self, name: str, spec: JSONObject) -> JSONObject:
        """``PATCH /environment/{name}``: the whole spec; a change is a new revision."""
        return self._object("PATCH", f"/environment/{_segment(name)}", body=spec)

    def delete_environment(self, name: str) -> JSONObject:
        """``DELETE /environment/{name}``: refused (409) while unended work uses it."""
        return self._object("DELETE", f"/environment/{_segment(name)}")

    def prepare_environment(self, name: str, cluster: str, timeout: float | None = None) -> JSONObject:
        """``POST /environment/{name}/prepare?cluster=``: build it there now (waiting up to
        ``timeout`` seconds); the build record."""
        path = f"/environment/{_segment(name)}/prepare"
        return self._object("POST", path, params={"cluster": cluster}, timeout=timeout)

    def list_clusters(self) -> list[JSONObject]:
        """``GET /cluster``: every registered cluster with its state and capacity."""
        items, _ = self._list("/cluster")
        return items

    def list_clusters_and_errors(self) -> tuple[list[JSONObject], list[JSONObject]]:
        """``GET /cluster``: the clusters and ``attributes.configErrors`` (refused cluster files)."""
        items, attributes = self._list("/cluster")
        errors = attributes.get("configErrors")
        return items, [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []

    def get_cluster(self, name: str) -> JSONObject:
        """``GET /cluster/{name}``; :class:`NotFound` when unknown."""
        return self._object("GET", f"/cluster/{_segment(name)}")

    def cluster_errors(self) -> list[JSONObject]:
        """``GET /cluster/errors``: every refused cluster file, ``{"file", "line", "key", "reason"}``."""
        items, _ = self._list("/cluster/errors")
        return items

    def cordon_cluster(self, name: str) -> JSONObject:
        """``POST /cluster/{name}/cordon``: no new work there; returns the cluster."""
        return self._object("POST", f"/cluster/{_segment(name)}/cordon")

    def uncordon_cluster(self, name: str) -> JSONObject:
        """``POST /cluster/{name}/uncordon``: clear a cordon and a manual drain; returns the cluster."""
        return self._object("POST", f"/cluster/{_segment(name)}/uncordon")

    def drain_cluster(self, name: str) -> JSONObject:
        """``POST /cluster/{name}/drain``: no new work, running work runs to its end (nothing is
        evicted); the cluster's ``workloads`` and ``drained`` tell when it is empty."""
        return self._object("POST", f"/cluster/{_segment(name)}/drain")

    # -- users ---------------------------------------------------------------------------------
    def list_users(self) -> list[JSONObject]:
        """``GET /user``: every user with its teams (``{"name", "teams", "createdTime"}``)."""
        items, _ = self._list("/user")
        return items

    def whoami(self) -> JSONObject:
        """``GET /user/me``: the caller as the broker sees it (``{"name", "teams", "admin"}``)."""
        return self._object("GET", "/user/me")

    # -- tokens --------------------------------------------------------------------------------
    def list_tokens(
        self, user: str | None = None, everyone: bool = False, revoked: bool = False
    ) -> list[JSONObject]:
        """``GET /token``: the caller's tokens (admins: ``user``'s or everyone's); never a secret."""
        params: dict[str, str] = {}
        if user:
            params["user"] = user
        if everyone:
            params["all"] = "true"
        if revoked:
            params["revoked"] = "true"
        items, _ = self._list("/token", params=params)
        return items

    def revoke_token(self, token_id: str) -> tuple[JSONObject, bool]:
        """``DELETE /token/{id}``: the token, revoked at once on every broker, and whether this call
        revoked it (False: it was revoked already)."""
        result, attributes = self._call("DELETE", f"/token/{_segment(token_id)}")
        if not isinstance(result, dict):
            raise BrokerError(0, "unexpected answer to DELETE /token: expected an object")
        return result, attributes.get("changed") is not False

    # -- policy --------------------------------------------------------------------------------
    def get_policy(self) -> JSONObject:
        """``GET /policy``: the live policy, ``{"revision", "lines": [csv]}``."""
        return self._object("GET", "/policy")

    def add_policy_lines(self, lines: list[str], message: str = "") -> JSONObject:
        """``POST /policy``: add lines (all or none); returns the new ``{"revision", "lines"}``."""
        return self._object("POST", "/policy", body={"lines": list(lines), "message": message})

    def remove_policy_lines(self, lines: list[str], message: str = "") -> JSONObject:
        """``DELETE /policy`` with a body: remove lines; returns the new ``{"revision", "lines"}``."""
        return self._object("DELETE", "/policy", body={"lines": list(lines), "message": message})

    def replace_policy(self, lines: list[str], message: str = "") -> JSONObject:
        """``PUT /policy``: make ``lines`` the whole policy; returns the new ``{"revision", "lines"}``."""
        return self._object("PUT", "/policy", body={"lines": list(lines), "message": message})

    def test_policy(self, user: str, namespace: str, obj: str, action: str) -> JSONObject:
        """``POST /policy/test``: would the policy allow it? ``{..., "allowed", "matched", "revision"}``."""
        body = {"user": user, "namespace": namespace, "object": obj, "action": action}
        return self._object("POST", "/policy/test", body=body)

    def policy_revisions(self) -> list[JSONObject]:
        """``GET /policy/revisions``: every edit, oldest first, with author, time and diff."""
        items, _ = self._list("/policy/revisions")
        return items

    def revert_policy(self, revision: int) -> JSONObject:
        """``POST /policy/revert/{revision}``: restore the policy as it was after ``revision``."""
        return self._object("POST", f"/policy/revert/{int(revision)}")

    # -- placement -----------------------------------------------------------------------------
    def explain_placement(self, spec: JSONObject) -> JSONObject:
        """``POST /placement/explain``: where ``spec`` would go now, every cluster's verdict and why."""
        return self._object("POST", "/placement/explain", body=spec)
