"""Create, read, delete and list objects by kind key: ``cr`` (a custom object: a Kubeflow job or
Notebook, or a KServe InferenceService, by plural), ``svc``, ``job``, ``sts``, ``deploy``,
``secret``, ``pvc`` and ``pod``.

A create that meets a 409 adopts the existing object only when its labels say it is ours (the
attempt's uid, or for a notebook's claim the notebook and origin: a repeated submit); deletes
use foreground propagation (pods go first) and take a 404 as done; lists are label-selected on
the broker's origin label unless told otherwise.
"""

from __future__ import annotations

from typing import Any

from clusters.errors import ClusterUnreachable
from clusters.kubernetes import manifests as m
from clusters.kubernetes.client import CR_PLURALS, KubeClient, Refused, cr_group

#: Typed kinds: the official client's API class and the kind's name in its method names.
TYPED: dict[str, tuple[str, str]] = {
    "svc": ("CoreV1Api", "service"),
    "job": ("BatchV1Api", "job"),
    "sts": ("AppsV1Api", "stateful_set"),
    "deploy": ("AppsV1Api", "deployment"),
    "secret": ("CoreV1Api", "secret"),
    "pvc": ("CoreV1Api", "persistent_volume_claim"),
    "pod": ("CoreV1Api", "pod"),
}


class KubeApi(KubeClient):
    """The client with the object verbs every adapter verb is built from: the adapter's API object."""

    def _typed(self, what: str, verb: str) -> Any:
        """The client method ``<verb>_namespaced_<kind>`` of a typed kind."""
        from kubernetes import client

        api_class, snake = TYPED[what]
        return getattr(getattr(client, api_class)(self.client()), f"{verb}_namespaced_{snake}")

    def _custom(self, verb: str) -> Any:
        from kubernetes import client

        return getattr(client.CustomObjectsApi(self.client()), f"{verb}_namespaced_custom_object")

    def create(self, what: str, body: dict[str, Any], uid: str, mine: dict[str, str] | None = None) -> bool:
        """Create one object; True when this call made it, False when it adopted ours.

        ``mine``: the labels that make an existing object of that name ours (default: the uid label).
        """
        name = body["metadata"]["name"]
        try:
            if what == "cr":
                plural = CR_PLURALS[body["kind"]]
                self.call(
                    self._custom("create"),
                    *cr_group(plural),
                    self.namespace,
                    plural,
                    body,
                    _preload_content=False,
                )
            else:
                self.call(self._typed(what, "create"), self.namespace, body, _preload_content=False)
            return True
        except Refused as exc:
            if exc.status != 409:
                raise
        existing = self.get(what, body)
        labels = (existing.get("metadata") or {}).get("labels") or {}
        wanted = mine or {m.LABEL_UID: m.label_value(uid)}
        wrong = next((key for key, value in wanted.items() if labels.get(key) != value), None)
        if wrong is None:
            return False
        whose = "this attempt's" if wrong == m.LABEL_UID else "ours"
        raise Refused(
            409,
            f"{body['kind']} {name} already exists in namespace {self.namespace} and is not {whose} "
            f"(its {wrong} label is {labels.get(wrong)!r})",
        )

    def replace(self, what: str, body: dict[str, Any]) -> None:
        """Replace a typed object named like ``body`` with ``body`` (a PUT)."""
        self.call(
            self._typed(what, "replace"),
            body["metadata"]["name"],
            self.namespace,
            body,
            _preload_content=False,
        )

    def get(self, what: str, body: dict[str, Any]) -> dict[str, Any]:
        """The object named like ``body``, as JSON."""
        return self.read(what, body["metadata"]["name"], CR_PLURALS.get(str(body.get("kind"))))

    def read(self, what: str, name: str, plural: str | None = None) -> dict[str, Any]:
        """One object as JSON (a 404 is raised as :class:`Refused`)."""
        found: dict[str, Any]
        if what == "cr":
            found = self.json(self._custom("get"), *cr_group(plural), self.namespace, plural, name)
        else:
            found = self.json(self._typed(what, "read"), name, self.namespace)
        return found

    def delete(self, what: str, body: dict[str, Any]) -> None:
        """Delete the object named like ``body`` (see :meth:`delete_named`)."""
        self.delete_named(what, body["metadata"]["name"], body.get("kind"))

    def delete_named(
        self, what: str, name: str, kind_name: str | None = None, plural: str | None = None
    ) -> None:
        """Delete with foreground propagation; a 404 is fine."""
        try:
            if what == "cr":
                plural = plural or CR_PLURALS[kind_name or ""]
                self.call(
                    self._custom("delete"),
                    *cr_group(plural),
                    self.namespace,
                    plural,
                    name,
                    propagation_policy="Foreground",
                    _preload_content=False,
                )
            else:
                self.call(
                    self._typed(what, "delete"),
                    name,
                    self.namespace,
                    propagation_policy="Foreground",
                    _preload_content=False,
                )
        except Refused as exc:
            if exc.status != 404:
                raise ClusterUnreachable(f"{self.where()} did not delete {name}: {exc.message}") from None

    def selector(self) -> str:
        """The label selector of every object this broker made here."""
        return f"{m.LABEL_ORIGIN}={self.origin}"

    def list_objects(
        self, what: str, plural: str | None = None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Objects of a kind in the namespace, selected by ``selector`` (default: the origin label)."""
        selector = selector or self.selector()
        try:
            if what == "cr":
                data = self.json(
                    self._custom("list"),
                    *cr_group(plural),
                    self.namespace,
                    plural,
                    label_selector=selector,
                )
            else:
                data = self.json(self._typed(what, "list"), self.namespace, label_selector=selector)
        except Refused as exc:
            if exc.status == 404 and what == "cr":  # the CRD is gone
                return []
            raise ClusterUnreachable(
                f"{self.where()} refused to list {plural or what}: {exc.message}"
            ) from None
        return list(data.get("items") or [])


def by_uid(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Objects grouped by their attempt's uid label (objects without one are left out)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        uid = ((item.get("metadata") or {}).get("labels") or {}).get(m.LABEL_UID)
        if uid:
            out.setdefault(uid, []).append(item)
    return out
