"""A served model on Ray: one Ray Serve application per serve attempt, deployed by a Ray job.

``python -m runtimes.ray_serve deploy --http-host H --http-port P <encoded plan>`` runs as a Ray
job's driver (submitted by :mod:`clusters.ray.serving`): it starts Serve on the cluster with the
cluster's HTTP proxy address (ignored by Ray when Serve runs already: the proxy keeps the address
it has, which the adapter reads back from Serve's status API) and deploys the application
:func:`app_name` at the route prefix :func:`route_prefix`, holding one deployment named after the
served version (:func:`deployment_name`) with the plan's replica count and per-replica resources.
The driver returns once Serve reports the application RUNNING (the job SUCCEEDED) or fails it
(the job FAILED with Serve's reason). Serve applications are detached: the application outlives the
job, the broker and its restarts, until ``python -m runtimes.ray_serve delete <app name>`` (another
short job) deletes it.

Each replica downloads the version's files from the broker's artifact API and loads them with
:mod:`runtimes.model_server`'s own code, and answers through the model server's ASGI app (MLflow's
scoring protocol, ``/ping`` and ``/health`` open, everything else behind the server token), mounted
under the route prefix. The model server's log goes to the replica's Serve log file
(:func:`log_to_serve`), with Serve's own lines and one per request, which the adapter reads.

The plan's tokens ride in the deploy job's entrypoint, as a notebook's token does on Ray (see
:mod:`clusters.ray.adapter` on what Ray shows to readers of its job API).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from runtimes.plan import LaunchPlan

log = logging.getLogger("runtimes.ray_serve")
#: Serve application names and route prefixes of the broker's serves start with this.
APP_PREFIX = "sb-"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def app_name(uid: str) -> str:
    """The Serve application of attempt ``uid``."""
    return f"{APP_PREFIX}{uid}"


def route_prefix(uid: str) -> str:
    """The route prefix of attempt ``uid``'s application on Serve's HTTP proxy."""
    return f"/{app_name(uid)}"


def deployment_name(plan: LaunchPlan) -> str:
    """The one deployment of the application: the served version, ``<model>-v<version>``."""
    if plan.model is None:
        return "model"
    return _UNSAFE.sub("-", f"{plan.model.name}-v{plan.model.version}").strip("-") or "model"


def replica_options(plan: LaunchPlan) -> dict[str, Any]:
    """Ray actor options of one replica from the plan's per-replica resources."""
    each = plan.replicas[0].resources
    options: dict[str, Any] = {"num_cpus": each.cpu}
    if each.gpu:
        options["num_gpus"] = each.gpu
    if each.memory:
        options["memory"] = each.memory
    return options


class PrefixStripped:
    """Runs an ASGI app as if mounted at ``/``: Serve hands the app the whole path (route prefix
    included) with the prefix as ``root_path``; the model server routes and guards plain paths."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") in ("http", "websocket"):
            root = scope.get("root_path", "")
            path = scope.get("path", "")
            if root and path.startswith(root):
                scope = {**scope, "path": path[len(root) :] or "/", "root_path": ""}
        await self.app(scope, receive, send)


def log_to_serve() -> None:
    """Send the model server's log (``runtimes.*``, INFO and up) to the replica's Serve log file,
    where the broker reads a served model's logs from; Serve sets up only its own logger there."""
    serve_logger = logging.getLogger("ray.serve")
    ours = logging.getLogger("runtimes")
    ours.setLevel(logging.INFO)
    for handler in serve_logger.handlers:
        if handler not in ours.handlers:
            ours.addHandler(handler)
    ours.propagate = not serve_logger.handlers


def load_app(files_url: str, token: str, fetch_token: str | None) -> Any:
    """Download and load the version at ``files_url`` with the model server's :func:`load`; its
    app, prefix-stripped.

    Raises with the model server's reason when the files cannot be fetched or loaded: Serve then
    fails the replica, and the deployment with that message."""
    from runtimes.model_server import Loaded, build_app, load

    loaded = Loaded()
    loaded.set(load(files_url, Path(tempfile.mkdtemp(prefix="sb-serve-")) / "model", fetch_token))
    log.info("model server: loaded %s; ready", files_url.rsplit("/artifacts/", 1)[-1])
    return PrefixStripped(build_app(loaded, token))


def _deployment(plan: LaunchPlan) -> Any:
    """The bound Serve application of ``plan``."""
    from ray import serve

    from runtimes.serving import FETCH_TOKEN_ENV, TOKEN_ENV

    if plan.model is None:
        raise ValueError("not a serve plan: it names no model")
    env = plan.replicas[0].env

    class ModelServer:
        def __init__(self, files_url: str, token: str, fetch_token: str | None) -> None:
            log_to_serve()
            self._app = load_app(files_url, token, fetch_token)

        def __serve_build_asgi_app__(self) -> Any:
            return self._app

    ingress = serve.ingress()(ModelServer)
    options: Any = serve.deployment(
        name=deployment_name(plan),
        num_replicas=len(plan.replicas),
        ray_actor_options=replica_options(plan),
    )
    deployment = options(ingress)
    return deployment.bind(plan.model.files_url, env.get(TOKEN_ENV, ""), env.get(FETCH_TOKEN_ENV) or None)


def deploy(plan: LaunchPlan, http_host: str, http_port: int) -> None:
    """Start Serve (if it is not running) and deploy ``plan``'s application; returns once RUNNING."""
    import ray
    from ray import serve

    ray.init(log_to_driver=True)
    serve.start(http_options={"host": http_host, "port": http_port})
    serve.run(_deployment(plan), name=app_name(plan.uid), route_prefix=route_prefix(plan.uid))
    print(f"submarine-broker: serve application {app_name(plan.uid)} running", flush=True)


def delete(name: str) -> None:
    """Delete the Serve application ``name`` (nothing when there is none)."""
    import ray
    from ray import serve
    from ray.serve.exceptions import RayServeException

    ray.init(log_to_driver=True)
    try:
        serve.delete(name, _blocking=True)
    except RayServeException as exc:  # Serve is not running on the cluster: nothing to delete
        print(f"submarine-broker: no serve application {name}: {exc}", flush=True)
        return
    print(f"submarine-broker: serve application {name} deleted", flush=True)


def main(argv: list[str] | None = None) -> int:
    """``deploy --http-host H --http-port P <plan>`` or ``delete <app name>``."""
    from runtimes.ray_launcher import decode_plan

    parser = argparse.ArgumentParser(prog="python -m runtimes.ray_serve")
    verbs = parser.add_subparsers(dest="verb", required=True)
    deploying = verbs.add_parser("deploy")
    deploying.add_argument("--http-host", required=True)
    deploying.add_argument("--http-port", type=int, required=True)
    deploying.add_argument("plan")
    deleting = verbs.add_parser("delete")
    deleting.add_argument("name")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if args.verb == "deploy":
        deploy(decode_plan(args.plan), args.http_host, args.http_port)
    else:
        if not args.name.startswith(APP_PREFIX):
            print(f"refusing to delete '{args.name}': not a broker application", file=sys.stderr)
            return 2
        delete(args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
