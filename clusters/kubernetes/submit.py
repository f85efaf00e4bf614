"""Submit: a plan becomes the attempt's objects (a Kubeflow job, or Indexed Jobs and a headless Service;
for a notebook, the objects of :mod:`clusters.kubernetes.notebooks`; for a served model, those of
:mod:`clusters.kubernetes.serving`).

Which objects: ``workload_api: kubeflow`` → the training operator's kinds, ``job`` → Indexed
Jobs, ``auto`` → Kubeflow when discovery finds the kind served under ``kubeflow.org/v1`` (asked
once, cached). The plan's hosts say which shape it was built for (:func:`addressing`), so a
resubmission after a restart builds the same shape. Framework ``python`` is always plain Jobs.
400/404/409/422 answers to a create, and admission-webhook denials, are refusals
(:class:`SubmitRejected`); whatever the refused submit had created is deleted again.
"""

from __future__ import annotations

import contextlib
from typing import Any

from clusters.base import Handle
from clusters.errors import ClusterUnreachable, SubmitRejected
from clusters.kubernetes import environment as environments
from clusters.kubernetes import manifests as m
from clusters.kubernetes import notebooks as nb
from clusters.kubernetes import serving as sv
from clusters.kubernetes.client import JOB, KUBEFLOW, NOTEBOOK, Refused
from clusters.kubernetes.objects import KubeApi
from runtimes.notebook import ROLE as NOTEBOOK_ROLE
from runtimes.plan import LaunchPlan, StaticAddressing
from runtimes.serving import ROLE as SERVE_ROLE


def addressing(api: KubeApi, uid: str) -> StaticAddressing:
    """Kubeflow's per-replica Services, or pod DNS names under the attempt's headless Service;
    a notebook's server is its Service ``sb-<uid12>``, on Jupyter's port; a served model's
    replicas listen on the one replica port (their Service is ``sb-<uid12>``).

    With ``workload_api: auto`` this needs discovery, normally done by the health check already.
    """
    shape_host = m.kubeflow_host if api.shape() == KUBEFLOW else m.job_host

    def host(role: str, index: int) -> str:
        if role in (NOTEBOOK_ROLE, SERVE_ROLE):  # reached through the attempt's Service
            return m.base_name(uid)
        return shape_host(uid, role, index)

    return _Addressing(host, lambda: m.REPLICA_PORT)


def _plan_shape(api: KubeApi, plan: LaunchPlan) -> str:
    if plan.framework not in m.KUBEFLOW_KINDS:
        return JOB
    service_suffix = "." + m.service_name(plan.uid)
    if any(r.host.endswith(service_suffix) for r in plan.replicas):
        return JOB
    if api.config.workload_api == JOB:
        return JOB
    return KUBEFLOW


def _handle(api: KubeApi, plan: LaunchPlan, shape: str) -> Handle:
    state: dict[str, Any] = {"shape": shape, "namespace": api.namespace, "name": m.base_name(plan.uid)}
    if shape == KUBEFLOW:
        kind = m.KUBEFLOW_KINDS[plan.framework]
        state.update(kind=kind.kind, plural=kind.plural)
    else:
        roles = list(dict.fromkeys(r.role for r in plan.replicas))
        state.update(
            jobs={r.lower(): m.job_name(plan.uid, r) for r in roles}, service=m.service_name(plan.uid)
        )
    return Handle.for_plan(plan, **state, **environments.handle_state(plan))


def submit(api: KubeApi, plan: LaunchPlan) -> Handle:
    """Create the attempt's objects (blocking); a 409 adopts an object only when its uid label is
    the plan's."""
    if plan.workload_kind == NOTEBOOK:
        return _submit_notebook(api, plan)
    if plan.workload_kind == sv.SERVE:
        return _submit_serve(api, plan)
    shape = _plan_shape(api, plan)
    try:
        if shape == KUBEFLOW:
            kind = m.KUBEFLOW_KINDS[plan.framework].kind
            if api.config.workload_api == "auto" and kind not in api.discover():
                raise m.ManifestError(
                    f"the plan was addressed for the training operator, but {api.where()} does "
                    f"not serve {kind}"
                )
            body = m.kubeflow_job(plan, origin=api.origin, namespace=api.namespace, image=api.config.image)
            objects = [("cr", body)]
        else:
            objects = [("svc", m.headless_service(plan, origin=api.origin, namespace=api.namespace))]
            objects += [
                ("job", body)
                for body in m.indexed_jobs(
                    plan, origin=api.origin, namespace=api.namespace, image=api.config.image
                )
            ]
    except m.ManifestError as exc:
        raise SubmitRejected(f"{api.where()} cannot run this plan: {exc}") from None
    _prepare(api, plan, objects)
    _create_all(api, plan, objects)
    return _handle(api, plan, shape)


def _prepare(api: KubeApi, plan: LaunchPlan, objects: list[tuple[str, dict[str, Any]]]) -> None:
    """The environment's install and the pull Secrets in every pod; those Secrets made current."""
    for _, body in objects:
        environments.apply(body, plan, api.config)
    for secret in environments.pull_secrets(plan, origin=api.origin, namespace=api.namespace):
        _keep_current(api, secret)


def _keep_current(api: KubeApi, secret: dict[str, Any]) -> None:
    """Create a registry's pull Secret, or replace ours when its content differs; never touch a
    Secret of that name that is not this broker's (a refusal names it, never its content)."""
    name = secret["metadata"]["name"]
    try:
        existing: dict[str, Any] | None = api.get("secret", secret)
    except Refused as exc:
        if exc.status != 404:
            raise SubmitRejected(f"{api.where()} refused to read Secret {name}: {exc.message}") from None
        existing = None
    try:
        if existing is None:
            api.create("secret", secret, "", {m.LABEL_ORIGIN: api.origin})
            return
        labels = (existing.get("metadata") or {}).get("labels") or {}
        if labels.get(m.LABEL_ORIGIN) != api.origin:
            raise SubmitRejected(
                f"{api.where()}: Secret {name} exists and is not this broker's (no "
                f"{m.LABEL_ORIGIN}={api.origin} label); it cannot hold the registry's credentials"
            )
        if existing.get("data") != secret["data"] or existing.get("type") != secret["type"]:
            api.replace("secret", secret)
    except Refused as exc:
        raise SubmitRejected(f"{api.where()} refused Secret {name}: {exc.message}") from None


def _create_all(api: KubeApi, plan: LaunchPlan, objects: list[tuple[str, dict[str, Any]]]) -> None:
    """Create in order; on a refusal delete what this call made and raise SubmitRejected."""
    created: list[tuple[str, dict[str, Any]]] = []
    try:
        for what, body in objects:
            mine = _claim_labels(api, plan) if what == "pvc" else None
            if api.create(what, body, plan.uid, mine):
                created.append((what, body))
    except Refused as exc:
        for what, made in reversed(created):  # leave nothing half-made behind a refusal
            with contextlib.suppress(Refused, ClusterUnreachable):
                api.delete(what, made)
        raise SubmitRejected(
            f"{api.where()} refused {body['kind']} {body['metadata']['name']}: {exc.message}"
        ) from None


# -- notebooks ---------------------------------------------------------------------------------


def _claim_labels(api: KubeApi, plan: LaunchPlan) -> dict[str, str]:
    """What makes an existing working-directory claim this notebook's (of this broker)."""
    return {m.LABEL_ORIGIN: api.origin, nb.LABEL_NOTEBOOK: m.label_value(plan.workload_id)}


def _submit_notebook(api: KubeApi, plan: LaunchPlan) -> Handle:
    """A Kubeflow Notebook or a StatefulSet + Service, with the token Secret and the claim."""
    shape = api.notebook_api()
    try:
        objects = nb.objects(plan, api.config, origin=api.origin, api=shape)
    except m.ManifestError as exc:
        raise SubmitRejected(f"{api.where()} cannot run this notebook: {exc}") from None
    _prepare(api, plan, objects)
    _create_all(api, plan, objects)
    name = m.base_name(plan.uid)
    claim = next((body["metadata"]["name"] for what, body in objects if what == "pvc"), None)
    return Handle.for_plan(
        plan,
        shape=NOTEBOOK,
        api=shape,
        namespace=api.namespace,
        name=name,
        service=name,
        secret=name,
        claim=claim,
        **environments.handle_state(plan),
    )


# -- served models -----------------------------------------------------------------------------


def _submit_serve(api: KubeApi, plan: LaunchPlan) -> Handle:
    """A KServe InferenceService, or a Deployment + Service, with the token Secret."""
    shape = api.serve_api()
    try:
        objects = sv.objects(plan, api.config, origin=api.origin, api=shape)
    except m.ManifestError as exc:
        raise SubmitRejected(f"{api.where()} cannot serve this model: {exc}") from None
    _prepare(api, plan, objects)
    for _, body in objects:
        if body["kind"] == sv.ISVC_KIND:
            _prepare_predictor(api, plan, body)
    _create_all(api, plan, objects)
    name = m.base_name(plan.uid)
    return Handle.for_plan(
        plan,
        shape=sv.SERVE,
        api=shape,
        namespace=api.namespace,
        name=name,
        service=name,
        secret=name,
        **environments.handle_state(plan),
    )


def _prepare_predictor(api: KubeApi, plan: LaunchPlan, body: dict[str, Any]) -> None:
    """The environment's install and the pull Secrets in an InferenceService's predictor: its model
    container is the pod's (KServe builds the pod from the predictor's pod fields)."""
    predictor = body["spec"]["predictor"]
    pod: dict[str, Any] = {"containers": [predictor["model"]]}
    environments.apply({"spec": {"template": {"spec": pod}}}, plan, api.config)
    for key in ("initContainers", "volumes", "imagePullSecrets"):
        if pod.get(key):
            predictor[key] = [*predictor.get(key, []), *pod[key]]


class _Addressing(StaticAddressing):
    """Jupyter's port for a notebook's server; one port for every other replica (pods have own IPs)."""

    def port(self, role: str, index: int) -> int:
        return nb.JUPYTER_PORT if role == NOTEBOOK_ROLE else super().port(role, index)
