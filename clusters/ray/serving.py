"""Served models on a Ray cluster: a Ray Serve application per serve attempt (:mod:`runtimes.ray_serve`).

The adapter deploys with a Ray job (``sb-<uid>``, the same job API as every attempt) whose driver
runs ``serve.run`` and ends once the application is RUNNING; the application is detached, so it
outlives the job and any broker restart. Status and the endpoint come from Serve's status API on
the dashboard (``GET /api/serve/applications/``), read over HTTP like health: the broker never
joins the cluster. Deleting runs ``serve.delete`` in another short job (``sb-<uid>-delete``);
Serve's REST API cannot delete one application of several (its PUT/DELETE replace or drop the
whole declarative config, and Serve refuses to mix that with applications deployed by
``serve.run``).

Serve's HTTP proxy listens on the address the cluster config names (``serve_host``,
``serve_port``) when a deploy job is the first to start Serve on the cluster; otherwise on
whatever Serve already has. The endpoint is always what Serve reports (``http_options``), with a
wildcard host replaced by the head's host from ``address``.

Logs: each Serve replica writes a log file of its own on its node (Serve's replica lines, the
requests it answered, and the model server's output, which Serve redirects there); the status
answer names it (``log_file_path`` and ``node_id`` per replica) and the dashboard's log API
(``GET /api/v0/logs/file``) reads it, again over HTTP. Serve's replica ids are random and change
when a replica restarts, so they are shown under the plan's replica names (``server-0``, ...) in
the order Serve started them (:func:`replica_logs`). Before the application exists (deploying) or
when it could not be deployed, the deploy job's own log stands in for the primary's: it holds
Serve's reason and the replicas' output while they were loading the model.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from clusters.base import Observation, Phase
from runtimes.ray_serve import route_prefix

#: Serve application statuses (``ray.serve.schema.ApplicationStatus``) and the phase each means.
_PHASES = {
    "RUNNING": Phase.RUNNING,
    "UNHEALTHY": Phase.RUNNING,  # Serve restarts the failing replicas itself
    "DEPLOYING": Phase.PENDING,
    "NOT_STARTED": Phase.PENDING,
    "DEPLOY_FAILED": Phase.FAILED,
    "DELETING": Phase.NOT_FOUND,
}
#: What Serve's status path answers (the dashboard's serve module).
STATUS_PATH = "/api/serve/applications/"
#: The dashboard's log API: one file of one node (``node_id``, ``filename``, ``lines``).
LOG_PATH = "/api/v0/logs/file"
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def delete_submission_id(uid: str) -> str:
    """The Ray job that deletes attempt ``uid``'s application."""
    return f"sb-{uid}-delete"


def applications(details: dict[str, Any]) -> dict[str, Any]:
    """The applications of Serve's status answer by name (``{}`` while Serve is not running)."""
    apps = details.get("applications") if isinstance(details, dict) else None
    return apps if isinstance(apps, dict) else {}


def _reason(app: dict[str, Any]) -> str:
    """Serve's message for an application, else its first deployment's that has one."""
    message = str(app.get("message") or "").strip()
    if not message:
        for deployment in (app.get("deployments") or {}).values():
            message = str((deployment or {}).get("message") or "").strip()
            if message:
                break
    return message


def observe_app(uid: str, app: dict[str, Any]) -> Observation:
    """One attempt from its application's entry in Serve's status answer."""
    status = str(app.get("status") or "")
    phase = _PHASES.get(status, Phase.UNKNOWN)
    message = _reason(app)
    if phase is Phase.FAILED:
        return Observation(uid, phase, f"Ray Serve could not deploy the model: {message[:500]}", "exit_code")
    if phase is Phase.PENDING:
        return Observation(uid, phase, "deploying on Ray Serve")
    if phase is Phase.NOT_FOUND:
        return Observation(uid, phase, "the Ray Serve application is being deleted")
    if status == "UNHEALTHY":
        return Observation(uid, phase, f"Ray Serve reports the model unhealthy: {message[:400]}")
    return Observation(uid, phase, "" if phase is Phase.RUNNING else f"Ray Serve status {status}")


def proxy_base(details: dict[str, Any], address: str) -> str | None:
    """``http://host:port`` of Serve's HTTP proxy, from the status answer's ``http_options``."""
    options = details.get("http_options") if isinstance(details, dict) else None
    if not isinstance(options, dict) or not options.get("port"):
        return None
    host = str(options.get("host") or "")
    if host in _WILDCARDS:
        host = urlsplit(address).hostname or "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{int(options['port'])}"


def app_endpoint(details: dict[str, Any], name: str, uid: str, address: str) -> str | None:
    """The application's URL on Serve's proxy while it is RUNNING (or UNHEALTHY), else None."""
    app = applications(details).get(name)
    if not isinstance(app, dict) or str(app.get("status")) not in ("RUNNING", "UNHEALTHY"):
        return None
    base = proxy_base(details, address)
    if base is None:
        return None
    prefix = str(app.get("route_prefix") or route_prefix(uid))
    return base + prefix.rstrip("/")


def replica_logs(app: dict[str, Any], names: list[str]) -> dict[str, tuple[str, str]]:
    """Where each replica of ``app`` logs, ``{plan name: (node_id, file)}``: Serve's replicas of
    every deployment in the order they started, under the plan's names (``names``, primary first);
    those past the plan's count (a replica Serve is replacing) are left out, and so are replicas
    whose file Serve does not know yet. ``file`` is relative to the node's Ray log folder."""
    found: list[tuple[float, str, str]] = []
    for deployment in (app.get("deployments") or {}).values():
        for replica in (deployment or {}).get("replicas") or []:
            node = str((replica or {}).get("node_id") or "")
            path = str((replica or {}).get("log_file_path") or "").lstrip("/")
            if node and path:
                found.append((float(replica.get("start_time_s") or 0.0), node, path))
    found.sort()
    return {name: (node, path) for name, (_, node, path) in zip(names, found, strict=False)}
