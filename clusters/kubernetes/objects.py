"""Create, read, delete and list the attempt's objects by kind: ``cr`` (a Kubeflow job), ``svc``, ``job``.

A create that meets a 409 adopts the existing object only when its uid label is the attempt's
(a repeated submit); deletes use foreground propagation (pods go first) and take a 404 as done;
lists are label-selected on the broker's origin label.
"""

from __future__ import annotations

from typing import Any

from clusters.errors import ClusterUnreachable
from clusters.kubernetes import manifests as m
from clusters.kubernetes.client import BY_KIND, KubeClient, Refused


class KubeObjects(KubeClient):
    """Mixin: the object verbs every adapter verb is built from."""

    def _create(self, what: str, body: dict[str, Any], uid: str) -> bool:
        """Create one object; True when this call made it, False when it adopted ours."""
        core, batch, custom = self._apis()
        name = body["metadata"]["name"]
        try:
            if what == "cr":
                kind = BY_KIND[body["kind"]]
                self._call(
                    custom.create_namespaced_custom_object,
                    m.KUBEFLOW_GROUP,
                    m.KUBEFLOW_VERSION,
                    self._ns,
                    kind.plural,
                    body,
                    _preload_content=False,
                )
            elif what == "svc":
                self._call(core.create_namespaced_service, self._ns, body, _preload_content=False)
            else:
                self._call(batch.create_namespaced_job, self._ns, body, _preload_content=False)
            return True
        except Refused as exc:
            if exc.status != 409:
                raise
        existing = self._get(what, body)
        labels = (existing.get("metadata") or {}).get("labels") or {}
        if labels.get(m.LABEL_UID) == m.label_value(uid):
            return False
        raise Refused(
            409,
            f"{body['kind']} {name} already exists in namespace {self._ns} and is not this attempt's "
            f"(its {m.LABEL_UID} label is {labels.get(m.LABEL_UID)!r})",
        )

    def _get(self, what: str, body: dict[str, Any]) -> dict[str, Any]:
        core, batch, custom = self._apis()
        name = body["metadata"]["name"]
        if what == "cr":
            kind = BY_KIND[body["kind"]]
            return self._json(
                custom.get_namespaced_custom_object,
                m.KUBEFLOW_GROUP,
                m.KUBEFLOW_VERSION,
                self._ns,
                kind.plural,
                name,
            )
        if what == "svc":
            return self._json(core.read_namespaced_service, name, self._ns)
        return self._json(batch.read_namespaced_job, name, self._ns)

    def _delete(self, what: str, body: dict[str, Any]) -> None:
        self._delete_named(what, body["metadata"]["name"], body.get("kind"))

    def _delete_named(
        self, what: str, name: str, kind_name: str | None = None, plural: str | None = None
    ) -> None:
        """Delete with foreground propagation; a 404 is fine."""
        core, batch, custom = self._apis()
        try:
            if what == "cr":
                self._call(
                    custom.delete_namespaced_custom_object,
                    m.KUBEFLOW_GROUP,
                    m.KUBEFLOW_VERSION,
                    self._ns,
                    plural or BY_KIND[kind_name or ""].plural,
                    name,
                    propagation_policy="Foreground",
                    _preload_content=False,
                )
            elif what == "svc":
                self._call(
                    core.delete_namespaced_service,
                    name,
                    self._ns,
                    propagation_policy="Foreground",
                    _preload_content=False,
                )
            else:
                self._call(
                    batch.delete_namespaced_job,
                    name,
                    self._ns,
                    propagation_policy="Foreground",
                    _preload_content=False,
                )
        except Refused as exc:
            if exc.status != 404:
                raise ClusterUnreachable(f"{self._where()} did not delete {name}: {exc.message}") from None

    def _selector(self) -> str:
        return f"{m.LABEL_ORIGIN}={self._origin}"

    def _list(self, what: str, plural: str | None = None) -> list[dict[str, Any]]:
        core, batch, custom = self._apis()
        selector = self._selector()
        try:
            if what == "cr":
                data = self._json(
                    custom.list_namespaced_custom_object,
                    m.KUBEFLOW_GROUP,
                    m.KUBEFLOW_VERSION,
                    self._ns,
                    plural,
                    label_selector=selector,
                )
            elif what == "svc":
                data = self._json(core.list_namespaced_service, self._ns, label_selector=selector)
            else:
                data = self._json(batch.list_namespaced_job, self._ns, label_selector=selector)
        except Refused as exc:
            if exc.status == 404 and what == "cr":  # the CRD is gone
                return []
            raise ClusterUnreachable(
                f"{self._where()} refused to list {plural or what}: {exc.message}"
            ) from None
        return list(data.get("items") or [])

    @staticmethod
    def _by_uid(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            uid = ((item.get("metadata") or {}).get("labels") or {}).get(m.LABEL_UID)
            if uid:
                out.setdefault(uid, []).append(item)
        return out
