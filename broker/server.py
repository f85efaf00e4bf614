"""Assemble and run the broker: database, id generator, cluster registry, services, loops, REST app."""

from __future__ import annotations

import gc
import importlib.util
import ipaddress
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette

from broker.api.app import build_app
from broker.api.serve_proxy import Decisions
from broker.artifacts.build import open_artifact_store
from broker.artifacts.gate import ArtifactGate, TrackingArtifactGate
from broker.artifacts.store import ArtifactStore
from broker.cluster_flags import ClusterFlags
from broker.cluster_watch import ClusterWatch, Vet, handles_on, workloads_on
from broker.config import ConfigError
from broker.config.loader import cluster_files, load_cluster_file
from broker.config.models import BrokerConfig, NotebooksConfig
from broker.environments.housekeeping import EnvironmentHousekeeping
from broker.environments.service import EnvironmentService
from broker.experiments.service import ExperimentService
from broker.ids import IdGenerator
from broker.images import ImageRegistries
from broker.model_registry.service import ModelRegistry
from broker.notebooks.proxy import NotebookProxy
from broker.notebooks.runtime import NotebookRuntime
from broker.notebooks.service import NotebookService
from broker.notebooks.tokens import NotebookTokens
from broker.notebooks.watch import NotebookWatch
from broker.planner import Planner
from broker.policy_runtime import PolicyRuntime
from broker.policy_store import PolicyStore, seed_default_policy
from broker.redaction import install_log_redaction
from broker.registry import ClusterRegistry
from broker.scheduler.dispatch import Dispatcher
from broker.scheduler.failover import Failover
from broker.scheduler.lease import LeaseKeeper
from broker.scheduler.loops import LEASE_NAME, Loops
from broker.scheduler.monitor import Monitor
from broker.secret_key import SecretBox
from broker.serving.fetch_tokens import FetchTokens
from broker.serving.handout import ServeHandout
from broker.serving.proxy import ServeProxy
from broker.serving.replicas import ServeTable
from broker.serving.rollouts import Rollouts
from broker.serving.service import ServeService
from broker.serving.watch import ServeWatch
from broker.signin_codes import SignInCodes
from broker.storage import open_storage
from broker.store.database import Database
from broker.tensorboard.servers import TensorBoards
from broker.tracking.handout import TrackingHandout
from broker.tracking.run_tokens import RunTokens
from broker.web.csrf import CsrfTokens
from broker.workloads.kind import Kind
from clusters.config import ClusterConfig
from clusters.kinds import KindUnavailable, adapter_class, register_kind
from policies.placement import default_engine

log = logging.getLogger("broker")


@dataclass
class BrokerContext:
    """Everything the request handlers and loops share, on ``app.state.broker``."""

    config: BrokerConfig
    db: Database
    registry: ClusterRegistry
    experiments: ExperimentService
    loops: Loops
    config_errors: list[ConfigError]
    policy: PolicyRuntime
    policy_store: PolicyStore
    planner: Planner
    cluster_flags: ClusterFlags
    notebooks: NotebookService
    proxy: NotebookProxy
    run_tokens: RunTokens
    #: MLflow's artifact files (a folder or an S3 bucket), and who may reach which path.
    artifacts: ArtifactStore
    #: The TensorBoard processes serving experiments' event files (under ``data_dir/tensorboard``).
    tensorboards: TensorBoards
    #: Registered models and their immutable versions (files copied into ``artifacts``).
    models: ModelRegistry
    #: Registered environments, their revisions and their builds per cluster.
    environments: EnvironmentService
    #: Served model versions (workloads of kind ``serve``).
    serves: ServeService
    #: The tokens model servers download their version's files with.
    fetch_tokens: FetchTokens
    artifact_gate: ArtifactGate = field(default_factory=TrackingArtifactGate)
    #: The ``/serve/...`` proxy: serves' ready model servers (published by the serving service).
    serve_proxy: ServeProxy = field(default_factory=ServeProxy)
    #: Cached "may read / invoke serve/<name>" answers of the policy in force.
    serve_decisions: Decisions = field(default_factory=Decisions)
    #: The workbench's CSRF tokens (keyed by the broker's secret key).
    csrf: CsrfTokens = field(default_factory=lambda: CsrfTokens(SecretBox.ephemeral()))
    #: One-time sign-in links (``notebook open --sign-in-link``); None: the broker issues none.
    signin_codes: SignInCodes | None = None


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and names that resolve only to them."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def check_bind(config: BrokerConfig) -> None:
    """Refuse ``auth: none`` on anything but loopback: the broker runs commands on its hosts."""
    if config.auth == "none" and not is_loopback(config.host):
        raise ConfigError(
            "broker.yaml",
            f"auth: none serves only loopback addresses (127.0.0.1, ::1), not {config.host}; "
            "bind 127.0.0.1 or set auth: token",
            key="auth",
        )


def host_user_vet(config: BrokerConfig) -> Vet:
    """The broker's objection to a cluster file: with ``auth: token`` (several people), no cluster
    may run their work on this host as the broker's own Unix user (see ``run_as``)."""
    multi_user = config.auth != "none"

    def vet(cluster: ClusterConfig) -> tuple[str, str] | None:
        try:
            adapter = adapter_class(cluster.kind)
        except (KeyError, KindUnavailable):
            return None
        return adapter.host_user_problem(cluster, multi_user=multi_user)

    return vet


def check_host_users(config: BrokerConfig) -> None:
    """Refuse to start when a cluster file would run users' work as the broker's own Unix user
    (a local cluster without ``run_as`` under ``auth: token``), naming the file and what to set."""
    for kind, target in config.extra_kinds.items():
        register_kind(kind, target)
    vet = host_user_vet(config)
    for path in cluster_files(config.clusters_dir):
        try:
            cluster = load_cluster_file(path)
        except ConfigError:
            continue  # the cluster watch reports it, as for any refused file
        objection = vet(cluster)
        if objection is not None:
            key, reason = objection
            raise ConfigError(str(path), reason, key=key)


def broker_id(config: BrokerConfig) -> str:
    return config.broker_id or f"{socket.gethostname()}-{os.getpid()}"


def create_context(config: BrokerConfig) -> BrokerContext:
    """Open the database (migrated), load the clusters and build the services; starts nothing."""
    db, box = open_storage(config)
    artifacts = open_artifact_store(config)
    tokens = NotebookTokens(box)
    run_tokens = RunTokens(box)
    fetch_tokens = FetchTokens(box)
    holder = broker_id(config)
    registry = ClusterRegistry(str(config.data_dir), health_interval=config.loops.health_interval)
    for kind, target in config.extra_kinds.items():
        register_kind(kind, target)
    errors: list[ConfigError] = []  # kept current by the cluster watch (hot reload of clusters.d)
    cluster_watch = ClusterWatch(
        config.clusters_dir,
        registry,
        has_work=workloads_on(db),
        active_handles=handles_on(db),
        errors=errors,
        vet=host_user_vet(config),
    )
    cluster_watch.scan()
    cluster_flags = ClusterFlags(db, registry)
    cluster_flags.load()
    seed_default_policy(db, config.default_policy)
    policy = PolicyRuntime(db)
    jupyter = notebook_runtime(config.notebooks)
    planner = Planner(registry, policy, default_engine(config.environments.warm_weight), jupyter)
    environments = EnvironmentService(db, registry, IdGenerator(db, "environment", "_", holder))
    ids = IdGenerator(db, Kind.EXPERIMENT.value, "-", holder)
    images = ImageRegistries(config.registries, only=config.registries_only)
    loops: Loops = Loops(  # annotated: the failover below refers to it
        lease=LeaseKeeper(db, LEASE_NAME, holder, config.loops.lease_ttl),
        dispatcher=Dispatcher(
            db,
            registry,
            planner,
            backoff_max=config.loops.dispatch_backoff_max,
            extra_env={
                "SUBMARINE_SERVER_DNS_NAME": config.advertised_host,
                "SUBMARINE_SERVER_PORT": str(config.port),
            },
            notebooks=jupyter,
            tokens=tokens,
            claim_hold=config.loops.lease_ttl,
            tracking=TrackingHandout(run_tokens, tracking_uri(config)),
            images=images,
            serving=ServeHandout(fetch_tokens, tracking_uri(config)),
        ),
        monitor=Monitor(
            db,
            registry,
            poll_timeout=config.loops.poll_timeout,
            interval=config.loops.monitor_interval,
            starting_interval=config.loops.monitor_starting_interval,
        ),
        failover=Failover(
            db, registry, grace=config.loops.cluster_loss_grace, on_requeued=lambda: loops.wake_dispatch()
        ),
        registry=registry,
        policy=policy,
        config=config.loops,
        cluster_watch=cluster_watch,
        cluster_flags=cluster_flags,
        notebook_watch=NotebookWatch(db, registry, config.notebooks, tokens=tokens),
        notebook_interval=config.notebooks.check_interval,
        housekeeping=EnvironmentHousekeeping(db, registry, config.environments.keep_days),
        housekeeping_interval=config.environments.housekeeping_interval,
        serve_watch=ServeWatch(db, registry),
    )
    experiments = ExperimentService(
        db,
        registry,
        ids,
        default_namespace=config.default_namespace,
        planner=planner,
        on_submitted=loops.wake_dispatch,
        limits=config.limits,
        images=images,
        environments=environments,
    )
    notebooks = NotebookService(
        db,
        registry,
        IdGenerator(db, Kind.NOTEBOOK.value, "_", holder),
        default_namespace=config.default_namespace,
        planner=planner,
        tokens=tokens,
        on_submitted=loops.wake_dispatch,
        images=images,
        environments=environments,
    )
    models = ModelRegistry(db, artifacts)
    serves = ServeService(
        db,
        registry,
        IdGenerator(db, Kind.SERVE.value, "_", holder),
        default_namespace=config.default_namespace,
        planner=planner,
        tokens=tokens,
        models=models,
        on_submitted=loops.wake_dispatch,
        images=images,
        environments=environments,
    )
    serve_proxy = ServeProxy(ServeTable(serves.target))
    if loops.serve_watch is not None:
        loops.serve_watch.rollouts = Rollouts(db, serves, serve_proxy.table, policy)
    return BrokerContext(
        config,
        db,
        registry,
        experiments,
        loops,
        errors,
        policy,
        PolicyStore(db, auth=config.auth),
        planner,
        cluster_flags,
        notebooks,
        NotebookProxy(),
        run_tokens,
        artifacts,
        TensorBoards(config.data_dir / "tensorboard"),
        models,
        environments,
        serves,
        fetch_tokens,
        serve_proxy=serve_proxy,
        csrf=CsrfTokens(box),
        signin_codes=SignInCodes(db, box),
    )


def tracking_uri(config: BrokerConfig) -> str:
    """The broker's address as replicas reach it (``MLFLOW_TRACKING_URI``)."""
    host = config.advertised_host
    return f"http://{f'[{host}]' if ':' in host else host}:{config.port}"


def notebook_runtime(config: NotebooksConfig) -> NotebookRuntime:
    """The interpreter and Jupyter app notebook plans start (Lab when installed, for ``auto``)."""
    if config.app == "auto":
        module = "jupyterlab" if importlib.util.find_spec("jupyterlab") else "jupyter_server"
    else:
        module = {"lab": "jupyterlab", "server": "jupyter_server"}[config.app]
    return NotebookRuntime(python=config.python or sys.executable, app_module=module)


def create_app(config: BrokerConfig) -> Starlette:
    """The broker as an ASGI app; its lifespan opens everything and starts the loops."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        install_log_redaction()  # uvicorn's handlers exist by now
        try:
            context = create_context(config)
        except ConfigError as exc:
            log.error("cannot start: %s", exc.report())
            raise
        app.state.broker = context
        await context.registry.check_all()
        context.loops.start()
        # Everything built so far lives as long as the server: keep it out of the collector's
        # full passes, which otherwise rescan it (pydantic, SQLAlchemy, the policy) every time.
        gc.collect()
        gc.freeze()
        log.info(
            "broker %s serving on %s:%s with %d cluster(s): %s",
            broker_id(config),
            config.host,
            config.port,
            len(context.registry.all()),
            ", ".join(c.name for c in context.registry.all()) or "none",
        )
        try:
            yield
        finally:
            await context.loops.shutdown()
            await context.tensorboards.aclose()
            await context.proxy.aclose()
            await context.serve_proxy.aclose()
            await context.artifacts.aclose()
            await context.registry.close()
            context.db.dispose()

    return build_app(lifespan)


def run(config: BrokerConfig) -> None:
    """Serve until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("apscheduler", "alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    check_bind(config)
    check_host_users(config)
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level="info",
        access_log=False,
        lifespan="on",
    )
