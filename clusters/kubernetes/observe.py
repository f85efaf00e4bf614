"""Observe and stop attempts: poll (one label-selected list per kind), cancel, logs, the orphan sweep,
a notebook's kept files and where its server (or a served model) listens.

Each verb is a blocking function of the adapter's :class:`~clusters.kubernetes.objects.KubeApi`;
the adapter runs it in a worker thread (:meth:`KubeApi.thread`)."""

from __future__ import annotations

from typing import Any

from clusters.base import Handle, Observation, Phase, ReplicaLog, ReplicaStatus, summarise
from clusters.errors import ClusterUnreachable, WorkloadNotFound
from clusters.kubernetes import environment as environments
from clusters.kubernetes import manifests as m
from clusters.kubernetes import notebooks as nb
from clusters.kubernetes import serving as sv
from clusters.kubernetes.client import CR_PLURALS, JOB, KUBEFLOW, NOTEBOOK, Refused
from clusters.kubernetes.objects import KubeApi, by_uid
from clusters.kubernetes.states import job_state, kubeflow_state, parse_indexes
from runtimes.venv_build import installer_error

# -- poll ----------------------------------------------------------------------------------


def poll(api: KubeApi, handles: list[Handle]) -> dict[str, Observation]:
    """One label-selected list per kind in use (never a GET per attempt)."""
    plurals = sorted({str(h.state.get("plural")) for h in handles if h.state.get("shape") == KUBEFLOW})
    crs: dict[str, list[dict[str, Any]]] = {}
    for plural in plurals:
        for uid, items in by_uid(api.list_objects("cr", plural)).items():
            crs.setdefault(uid, []).extend(items)
    jobs = (
        by_uid(api.list_objects("job"))
        if any(h.state.get("shape") not in (KUBEFLOW, NOTEBOOK, sv.SERVE) for h in handles)
        else {}
    )
    notebooks = [h for h in handles if h.state.get("shape") == NOTEBOOK]
    out = _poll_notebooks(api, notebooks) if notebooks else {}
    served = [h for h in handles if h.state.get("shape") == sv.SERVE]
    if served:
        out.update(_poll_served(api, served))
    for handle in handles:
        key = m.label_value(handle.uid)
        if handle.state.get("shape") == KUBEFLOW:
            out[handle.uid] = _observe_cr(handle, crs.get(key, []))
        elif handle.state.get("shape") not in (NOTEBOOK, sv.SERVE):
            out[handle.uid] = _observe_jobs(handle, jobs.get(key, []))
    installing = [
        h for h in handles if h.state.get("environment") and out[h.uid].phase in (Phase.PENDING, Phase.FAILED)
    ]
    if installing:
        _environment_readings(api, installing, out)
    return out


def _environment_readings(api: KubeApi, handles: list[Handle], out: dict[str, Observation]) -> None:
    """For attempts whose pods install an environment and are not running yet (or failed): one
    pod list; an install that failed fails the attempt (category ``environment``, pip's error line
    from the install's log), one under way says so."""
    uids = ",".join(sorted(m.label_value(h.uid) for h in handles))
    pods = by_uid(api.list_objects("pod", selector=f"{api.selector()},{m.LABEL_UID} in ({uids})"))
    core = api.apis()[0]
    for handle in handles:
        env = handle.state["environment"]
        building = None
        for pod in pods.get(m.label_value(handle.uid), []):
            found = environments.install_state(pod)
            if found is None:
                continue
            what, code, previous = found
            if what == environments.RUNNING:
                building = building or pod
                continue
            lines = _pod_log(api, core, pod, 200, environments.INIT_CONTAINER, previous=previous)
            error = installer_error(lines) or f"the install exited with code {code}"
            failed = _replica_of(pod)
            replicas = tuple(
                ReplicaStatus(str(n), Phase.FAILED if n == failed else Phase.PENDING, message=error)
                for n in handle.state.get("replicas") or []
            )
            out[handle.uid] = Observation(
                handle.uid,
                Phase.FAILED,
                f"environment {env['describe']} could not be installed on {api.config.name}: {error}",
                "environment",
                replicas,
            )
            break
        else:
            if building is not None and out[handle.uid].phase is Phase.PENDING:
                seen = out[handle.uid]
                message = f"building environment {env['describe']} on {api.config.name}"
                out[handle.uid] = Observation(
                    handle.uid, seen.phase, message, seen.failure_category, seen.replicas
                )


def _poll_notebooks(api: KubeApi, handles: list[Handle]) -> dict[str, Observation]:
    """One list of StatefulSets and/or Notebooks, and one of pods only while a server is not ready
    (to see why: unschedulable, image pull, crash loop)."""
    by_api: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for which in sorted({str(h.state.get("api")) for h in handles}):
        what, plural = ("cr", nb.NOTEBOOK_PLURAL) if which == nb.KUBEFLOW else ("sts", None)
        by_api[which] = by_uid(api.list_objects(what, plural))
    mains: dict[str, dict[str, Any] | None] = {}
    for handle in handles:
        found = by_api[str(handle.state.get("api"))].get(m.label_value(handle.uid))
        mains[handle.uid] = found[0] if found else None
    pods: dict[str, list[dict[str, Any]]] = {}
    if any(obj is not None and _ready(obj) < 1 for obj in mains.values()):
        selector = f"{api.selector()},{nb.LABEL_NOTEBOOK}"
        pods = by_uid(api.list_objects("pod", selector=selector))
    out = {}
    for handle in handles:
        main = mains[handle.uid]
        if main is None:
            kind = nb.NOTEBOOK_KIND if handle.state.get("api") == nb.KUBEFLOW else "StatefulSet"
            out[handle.uid] = Observation(handle.uid, Phase.NOT_FOUND, f"no {kind} for attempt {handle.uid}")
            continue
        readings = [r for pod in pods.get(m.label_value(handle.uid), []) for r in nb.pod_states(pod)]
        shown = (main.get("status") or {}).get("containerState")
        if isinstance(shown, dict) and shown:  # the notebook controller's copy
            readings.append(nb.container_state(shown))
        out[handle.uid] = _observe_notebook(handle, _ready(main), readings)
    return out


def _poll_served(api: KubeApi, handles: list[Handle]) -> dict[str, Observation]:
    """One list of InferenceServices and/or Deployments, and one of pods only while one is not
    ready (to see why: unschedulable, image pull, crash loop)."""
    by_api: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for which in sorted({str(h.state.get("api")) for h in handles}):
        what, plural = ("cr", sv.ISVC_PLURAL) if which == sv.KSERVE else ("deploy", None)
        by_api[which] = by_uid(api.list_objects(what, plural))
    mains: dict[str, dict[str, Any] | None] = {}
    for handle in handles:
        found = by_api[str(handle.state.get("api"))].get(m.label_value(handle.uid))
        mains[handle.uid] = found[0] if found else None
    readings_now: dict[str, nb.Reading] = {}
    for handle in handles:
        main = mains[handle.uid]
        if main is not None:
            readings_now[handle.uid] = _served_state(handle, main, [])
    pods: dict[str, list[dict[str, Any]]] = {}
    if any(r.phase is not Phase.RUNNING for r in readings_now.values()):
        pods = by_uid(api.list_objects("pod", selector=f"{api.selector()},{sv.LABEL_SERVE}"))
    out = {}
    for handle in handles:
        main = mains[handle.uid]
        if main is None:
            kind = sv.ISVC_KIND if handle.state.get("api") == sv.KSERVE else "Deployment"
            out[handle.uid] = Observation(handle.uid, Phase.NOT_FOUND, f"no {kind} for attempt {handle.uid}")
            continue
        readings = [r for pod in pods.get(m.label_value(handle.uid), []) for r in nb.pod_states(pod)]
        reading = _served_state(handle, main, readings) if readings else readings_now[handle.uid]
        out[handle.uid] = _observe_reading(handle, reading)
    return out


def _served_state(handle: Handle, main: dict[str, Any], readings: list[nb.Reading]) -> nb.Reading:
    if handle.state.get("api") == sv.KSERVE:
        return sv.isvc_state(main, readings)
    return sv.deployment_state(main, readings)


def _observe_reading(handle: Handle, reading: nb.Reading) -> Observation:
    """A served model's observation: every replica reads the whole server's phase."""
    names = [str(n) for n in handle.state.get("replicas") or []] or ["serve-0"]
    if reading.phase is Phase.FAILED:
        # The pods are still there, restarting or retrying: the replicas read PENDING, so the
        # broker stops what is left (as for a notebook).
        replicas = tuple(ReplicaStatus(n, Phase.PENDING, message=reading.message) for n in names)
        return Observation(handle.uid, Phase.FAILED, reading.message, reading.failure_category, replicas)
    replicas = tuple(ReplicaStatus(n, reading.phase, message=reading.message) for n in names)
    return Observation(handle.uid, reading.phase, reading.message, None, replicas)


def _observe_notebook(handle: Handle, ready: int, readings: list[nb.Reading]) -> Observation:
    reading = nb.notebook_state(ready, readings)
    name = str((handle.state.get("replicas") or ["notebook-0"])[0])
    if reading.phase is Phase.FAILED:
        # The pod is still there, restarting or retrying: the replica reads PENDING, so the
        # broker stops what is left (as it does for the rest of a failed gang).
        replica = ReplicaStatus(name, Phase.PENDING, message=reading.message)
        return Observation(
            handle.uid,
            Phase.FAILED,
            f"replica {name}: {reading.message}",
            reading.failure_category,
            (replica,),
        )
    return Observation(
        handle.uid,
        reading.phase,
        reading.message,
        None,
        (ReplicaStatus(name, reading.phase, message=reading.message),),
    )


def _observe_cr(handle: Handle, items: list[dict[str, Any]]) -> Observation:
    if not items:
        return Observation(
            handle.uid, Phase.NOT_FOUND, f"no {handle.state.get('kind')} for attempt {handle.uid}"
        )
    reading = kubeflow_state(items[0].get("status"))
    replicas: tuple[ReplicaStatus, ...] = ()
    if reading.phase is Phase.SUCCEEDED:
        replicas = tuple(ReplicaStatus(n, Phase.SUCCEEDED, 0) for n in handle.state.get("replicas") or [])
    return Observation(handle.uid, reading.phase, reading.message, reading.failure_category, replicas)


def _observe_jobs(handle: Handle, items: list[dict[str, Any]]) -> Observation:
    if not items:
        return Observation(handle.uid, Phase.NOT_FOUND, f"no Jobs for attempt {handle.uid}")
    by_role = {((item.get("metadata") or {}).get("labels") or {}).get(m.LABEL_ROLE): item for item in items}
    replicas: list[ReplicaStatus] = []
    job_failure: tuple[str | None, str] | None = None
    for name in handle.state.get("replicas") or []:
        role, _, index = str(name).rpartition("-")
        job = by_role.get(role)
        if job is None:
            replicas.append(ReplicaStatus(name, Phase.NOT_FOUND, message="its Job is gone"))
            continue
        status = job.get("status") or {}
        reading = job_state(status)
        done = parse_indexes(status.get("completedIndexes"))
        failed = parse_indexes(status.get("failedIndexes"))
        if int(index) in done:
            replicas.append(ReplicaStatus(name, Phase.SUCCEEDED, 0))
        elif int(index) in failed or reading.phase is Phase.FAILED:
            replicas.append(ReplicaStatus(name, Phase.FAILED, message=reading.message or "failed"))
            if job_failure is None:
                job_failure = (reading.failure_category, reading.message)
        elif reading.phase is Phase.SUCCEEDED:
            replicas.append(ReplicaStatus(name, Phase.SUCCEEDED, 0))
        else:
            replicas.append(ReplicaStatus(name, reading.phase))
    seen = summarise(handle.uid, handle.state.get("success_roles") or [], replicas)
    if seen.phase is Phase.FAILED and job_failure is not None and seen.failure_category != "cluster_lost":
        first = next(r for r in replicas if r.phase is Phase.FAILED)
        return Observation(
            handle.uid,
            Phase.FAILED,
            f"replica {first.name}: {job_failure[1] or 'failed'}",
            job_failure[0] or "exit_code",
            seen.replicas,
        )
    return seen


# -- cancel and release --------------------------------------------------------------------


def release(api: KubeApi, workdir: str) -> bool:
    """Delete the notebook's claim ``sb-ws-<workdir>`` if it is ours (origin label)."""
    name = nb.workspace_name(workdir)
    try:
        claim = api.read("pvc", name)
    except Refused as exc:
        if exc.status == 404:
            return True
        raise ClusterUnreachable(f"{api.where()} did not read claim {name}: {exc.message}") from None
    labels = (claim.get("metadata") or {}).get("labels") or {}
    if labels.get(m.LABEL_ORIGIN) != api.origin:
        return False  # not ours: never delete another installation's data
    api.delete_named("pvc", name)
    return True


def cancel(api: KubeApi, handle: Handle) -> None:
    """Delete the attempt's objects with foreground propagation (their pods go first)."""
    state = handle.state
    if state.get("shape") == KUBEFLOW:
        api.delete_named("cr", str(state.get("name") or m.base_name(handle.uid)), plural=state.get("plural"))
        return
    if state.get("shape") == JOB:
        for name in (state.get("jobs") or {}).values():
            api.delete_named("job", str(name))
        api.delete_named("svc", str(state.get("service") or m.service_name(handle.uid)))
        return
    if state.get("shape") == NOTEBOOK:
        # The server first, then its Service and Secret; never the working-directory claim.
        name = str(state.get("name") or m.base_name(handle.uid))
        if state.get("api") == nb.KUBEFLOW:
            api.delete_named("cr", name, plural=nb.NOTEBOOK_PLURAL)  # its Service goes with it
        else:
            api.delete_named("sts", name)
            api.delete_named("svc", str(state.get("service") or name))
        api.delete_named("secret", str(state.get("secret") or name))
        return
    if state.get("shape") == sv.SERVE:
        # The server first (KServe's Deployment and Service go with the InferenceService), then
        # our Service and the token Secret.
        name = str(state.get("name") or m.base_name(handle.uid))
        if state.get("api") == sv.KSERVE:
            api.delete_named("cr", name, plural=sv.ISVC_PLURAL)
        else:
            api.delete_named("deploy", name)
            api.delete_named("svc", str(state.get("service") or name))
        api.delete_named("secret", str(state.get("secret") or name))
        return
    # A handle without state: find what carries its uid label.
    key = m.label_value(handle.uid)
    for what, plural in _kinds_in_use(api):
        for item in api.list_objects(what, plural):
            meta = item.get("metadata") or {}
            if (meta.get("labels") or {}).get(m.LABEL_UID) == key:
                api.delete_named(what, meta["name"], plural=plural)


def _kinds_in_use(api: KubeApi) -> list[tuple[str, str | None]]:
    """Every kind the adapter may have made, custom kinds when served (never claims: they
    outlive attempts)."""
    kinds: list[tuple[str, str | None]] = [
        ("job", None),
        ("svc", None),
        ("sts", None),
        ("deploy", None),
        ("secret", None),
    ]
    if api.config.workload_api != JOB:
        try:
            served = api.discover()
        except Refused:
            served = set()
        kinds += [("cr", CR_PLURALS[k]) for k in sorted(served)]
    if api.config.serve_api != sv.DEPLOYMENT and api.serve_api() == sv.KSERVE:
        kinds.append(("cr", sv.ISVC_PLURAL))
    return kinds


# -- logs ----------------------------------------------------------------------------------


def _replica_of(pod: dict[str, Any]) -> str | None:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    if m.KUBEFLOW_REPLICA_TYPE in labels:
        return f"{labels[m.KUBEFLOW_REPLICA_TYPE].lower()}-{labels.get(m.KUBEFLOW_REPLICA_INDEX, '0')}"
    role = labels.get(m.LABEL_ROLE)
    index = annotations.get(m.COMPLETION_INDEX, labels.get(m.COMPLETION_INDEX))
    if index is None:  # a StatefulSet's pod (a notebook's server): its ordinal
        index = labels.get(nb.STATEFULSET_POD_INDEX)
        if index is None and nb.STATEFULSET_POD_NAME in labels:
            index = str(labels[nb.STATEFULSET_POD_NAME]).rpartition("-")[2]
    if role and index is not None:
        return f"{role}-{index}"
    return None


def logs(api: KubeApi, handle: Handle, replica: str | None, tail: int | None) -> list[ReplicaLog]:
    """Each replica's pod log (the newest pod of the replica), in plan order: primary first."""
    core, _batch, _custom = api.apis()
    names = [str(n) for n in handle.state.get("replicas") or []]
    if replica is not None and names and replica not in names:
        raise WorkloadNotFound(
            f"attempt {handle.uid} has no replica '{replica}'; its replicas are {', '.join(names)}"
        )
    try:
        pods = (
            api.json(
                core.list_namespaced_pod,
                api.namespace,
                label_selector=f"{m.LABEL_UID}={m.label_value(handle.uid)}",
            ).get("items")
            or []
        )
    except Refused as exc:
        raise ClusterUnreachable(f"{api.where()} refused to list pods: {exc.message}") from None
    newest: dict[str, dict[str, Any]] = {}
    if handle.state.get("shape") == sv.SERVE:
        pods = _served_pods(pods, names)
    for pod in pods:
        name = _replica_of(pod)
        if name is None:
            continue
        stamp = str((pod.get("metadata") or {}).get("creationTimestamp") or "")
        if name not in newest or stamp >= str(newest[name]["metadata"].get("creationTimestamp") or ""):
            newest[name] = pod
    if not names:
        if not newest:
            raise WorkloadNotFound(f"attempt {handle.uid} has no pods on {api.where()}")
        names = sorted(newest)
    if replica is not None:
        names = [replica]
    if tail is not None and tail <= 0:
        return [ReplicaLog(name, []) for name in names]
    out = []
    for name in names:
        pod = newest.get(name)
        if pod is None:
            out.append(ReplicaLog(name, []))
            continue
        # A notebook's server container is named like its objects (sidecars may sit beside it).
        container = _server_container(handle)
        lines = _pod_log(api, core, pod, tail, container)
        # The environment's install (its init container) comes first: a failed install's error
        # is then in the replica's log, the replica itself never having started.
        inits = [c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or []]
        if environments.INIT_CONTAINER in inits:
            lines = _pod_log(api, core, pod, tail, environments.INIT_CONTAINER) + lines
            if tail is not None:
                lines = lines[-tail:]
        out.append(ReplicaLog(name, lines))
    return out


def _server_container(handle: Handle) -> str | None:
    """The container a replica's log is read from when its pod may hold sidecars: a notebook's
    server is named like its objects, a served model's like its Deployment or KServe's own."""
    shape = handle.state.get("shape")
    if shape == NOTEBOOK:
        return str(handle.state["name"])
    if shape == sv.SERVE:
        return sv.KSERVE_CONTAINER if handle.state.get("api") == sv.KSERVE else str(handle.state["name"])
    return None


def _served_pods(pods: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """A Deployment's pods carry no index: the running ones, oldest first, get the replica names in
    order (``server-0``, ``server-1``, ...), as annotations a copy of each pod carries."""
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    live.sort(
        key=lambda p: (str((p.get("metadata") or {}).get("creationTimestamp") or ""), p["metadata"]["name"])
    )
    out = []
    for name, pod in zip(names, live, strict=False):
        role, _, index = name.rpartition("-")
        meta = dict(pod.get("metadata") or {})
        meta["labels"] = {**(meta.get("labels") or {}), m.LABEL_ROLE: role}
        meta["annotations"] = {**(meta.get("annotations") or {}), m.COMPLETION_INDEX: index}
        out.append({**pod, "metadata": meta})
    return out


def _pod_log(
    api: KubeApi,
    core: Any,
    pod: dict[str, Any],
    tail: int | None,
    container: str | None,
    *,
    previous: bool = False,
) -> list[str]:
    """One container's log lines (the pod's only container when ``container`` is None; with
    ``previous``, its last run's); none when it has not started yet (400) or the pod is gone (404)."""
    named: dict[str, Any] = {"container": container} if container else {}
    if previous:
        named["previous"] = True
    try:
        text = api.call(
            core.read_namespaced_pod_log,
            pod["metadata"]["name"],
            api.namespace,
            tail_lines=tail if tail is not None else api.config.log_tail,
            _preload_content=False,
            **named,
        ).data
    except Refused:
        return []
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text or "")
    return text.splitlines()


# -- the orphan sweep ----------------------------------------------------------------------


def owned(api: KubeApi) -> list[Handle]:
    """Every attempt with objects carrying this broker's origin label."""
    found: dict[str, Handle] = {}
    for what, plural in _kinds_in_use(api):
        for item in api.list_objects(what, plural):
            meta = item.get("metadata") or {}
            labels = meta.get("labels") or {}
            uid = labels.get(m.LABEL_UID)
            if uid and nb.LABEL_NOTEBOOK in labels:
                _own_notebook(api, found, uid, what, meta)
                continue
            if uid and sv.LABEL_SERVE in labels:
                _own_served(api, found, uid, what, meta)
                continue
            if not uid or uid in found and found[uid].state.get("shape") == KUBEFLOW:
                continue
            notes = meta.get("annotations") or {}
            state: dict[str, Any] = {
                "namespace": api.namespace,
                "name": m.base_name(uid),
                "replicas": [n for n in (notes.get(m.ANNOTATION_REPLICAS) or "").split(",") if n],
                "success_roles": [n for n in (notes.get(m.ANNOTATION_SUCCESS) or "").split(",") if n],
            }
            if what == "cr":
                state.update(shape=KUBEFLOW, kind=item.get("kind"), plural=plural, name=meta.get("name"))
                found[uid] = Handle(uid, state)
                continue
            previous = found.get(uid)
            jobs = dict((previous.state.get("jobs") or {}) if previous else {})
            if what == "job":
                role = (meta.get("labels") or {}).get(m.LABEL_ROLE) or meta.get("name")
                jobs[str(role)] = meta.get("name")
            state.update(shape=JOB, jobs=jobs, service=m.service_name(uid))
            found[uid] = Handle(uid, state)
    return list(found.values())


def _own_notebook(api: KubeApi, found: dict[str, Handle], uid: str, what: str, meta: dict[str, Any]) -> None:
    """A notebook's handle from any of its objects; a Notebook CR says the Kubeflow way."""
    _own_server(api, found, uid, what, meta, NOTEBOOK, (nb.KUBEFLOW, nb.STATEFULSET))


def _own_served(api: KubeApi, found: dict[str, Handle], uid: str, what: str, meta: dict[str, Any]) -> None:
    """A served model's handle from any of its objects; an InferenceService says the KServe way."""
    _own_server(api, found, uid, what, meta, sv.SERVE, (sv.KSERVE, sv.DEPLOYMENT))


def _own_server(
    api: KubeApi,
    found: dict[str, Handle],
    uid: str,
    what: str,
    meta: dict[str, Any],
    shape: str,
    ways: tuple[str, str],
) -> None:
    """The handle of a server (a notebook's, a served model's) from one of its objects: ``ways`` is
    (made through a custom resource, made here); a custom resource says the first."""
    previous = found.get(uid)
    if what == "cr":
        which = ways[0]
    elif previous is not None:
        which = str(previous.state.get("api"))
    else:
        which = ways[1]
    name = m.base_name(uid)
    notes = meta.get("annotations") or {}
    found[uid] = Handle(
        uid,
        {
            "shape": shape,
            "api": which,
            "namespace": api.namespace,
            "name": name,
            "service": name,
            "secret": name,
            "replicas": [n for n in (notes.get(m.ANNOTATION_REPLICAS) or "").split(",") if n],
            "success_roles": [n for n in (notes.get(m.ANNOTATION_SUCCESS) or "").split(",") if n],
        },
    )


# -- endpoints -----------------------------------------------------------------------------


def served_endpoint(api: KubeApi, handle: Handle) -> str | None:
    """A served model's URL once a replica is ready, else None: the InferenceService's reported
    URL, or the fallback Service through ``serve_endpoint``."""
    state = handle.state
    name = str(state.get("name") or m.base_name(handle.uid))
    service = str(state.get("service") or name)
    try:
        if state.get("api") == sv.KSERVE:
            main = api.read("cr", name, sv.ISVC_PLURAL)
            if sv.isvc_state(main, []).phase is not Phase.RUNNING:
                return None
            return sv.isvc_url(main)
        main = api.read("deploy", name)
        if sv.deployment_state(main, []).phase is not Phase.RUNNING:
            return None
        return _service_url(api, api.config.serve_endpoint, service, handle.uid)
    except Refused as exc:
        if exc.status == 404:
            return None  # gone: the monitor reports that
        raise ClusterUnreachable(f"{api.where()} refused to read {name}: {exc.message}") from None


def _service_url(api: KubeApi, template: str, service: str, uid: str) -> str | None:
    """A server's Service URL from a cluster's endpoint template (None while a ``{cluster_ip}`` it
    names is not assigned); a 404 reading the Service is raised as :class:`Refused`."""
    cluster_ip = ""
    if "{cluster_ip}" in template:
        cluster_ip = str((api.read("svc", service).get("spec") or {}).get("clusterIP") or "")
        if not cluster_ip or cluster_ip == "None":
            return None
    return nb.endpoint(template, service=service, namespace=api.namespace, uid=uid, cluster_ip=cluster_ip)


def endpoint(api: KubeApi, handle: Handle) -> str | None:
    """A notebook's server URL (from ``notebook_endpoint``) once its pod is ready, else None."""
    state = handle.state
    name = str(state.get("name") or m.base_name(handle.uid))
    service = str(state.get("service") or name)
    try:
        if state.get("api") == nb.KUBEFLOW:
            main = api.read("cr", name, nb.NOTEBOOK_PLURAL)
        else:
            main = api.read("sts", name)
        if _ready(main) < 1:
            return None
        return _service_url(api, api.config.notebook_endpoint, service, handle.uid)
    except Refused as exc:
        if exc.status == 404:
            return None  # gone: the monitor reports that
        raise ClusterUnreachable(f"{api.where()} refused to read {name}: {exc.message}") from None


def _ready(obj: dict[str, Any]) -> int:
    """``status.readyReplicas`` of a StatefulSet or a Kubeflow Notebook."""
    try:
        return int((obj.get("status") or {}).get("readyReplicas") or 0)
    except (TypeError, ValueError):
        return 0
