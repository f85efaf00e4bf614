"""Image registries: which configured registry an image comes from, the allowed-registries check
at submit, and the credentials a plan carries to its cluster.

An image belongs to a registry of ``broker.yaml`` ``registries`` when it starts with the
registry's ``url`` and a ``/`` (``registry.example.com:5000/ml/torch:2``; a Docker Hub image
``org/img`` is compared as ``docker.io/org/img``), or when it is written ``<name>/<path>`` with the
registry's name as its first part (``corp/torch:2``: the shorthand, resolved to ``<url>/<path>``
when the work is dispatched; a registry's name so shadows a Docker Hub organisation of that
name). With ``registries_only: true`` an image of no registry is refused at submit with a 400
naming the image and the allowed registries. The check is generic: no cluster object is built
here; each adapter turns :attr:`~runtimes.plan.LaunchPlan.registry_auth` into its own.

Credentials are read from the broker's environment when a plan is made (so a changed variable is
used by the next dispatch after a restart), never logged, and never part of any response.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

from pydantic import SecretStr

from broker.config.models import RegistryConfig
from broker.errors import BadRequest, FieldProblem, problems_message
from broker.redaction import remember_values
from runtimes.images import DOCKER_HUB, RegistryAuth, image_host
from runtimes.notebook import NotebookSpec
from runtimes.plan import LaunchPlan
from runtimes.serving import ServeSpec
from runtimes.spec import ExperimentSpec

log = logging.getLogger(__name__)
#: The key Docker's client config uses for Docker Hub.
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"


def _full_name(image: str) -> str:
    """``image`` with Docker Hub's implicit parts written out (``python`` → ``docker.io/library/python``)."""
    if image_host(image) != DOCKER_HUB or image.startswith(f"{DOCKER_HUB}/"):
        return image
    return f"{DOCKER_HUB}/{image if '/' in image else 'library/' + image}"


class ImageRegistries:
    """The configured registries, and whether images outside them are refused."""

    def __init__(
        self,
        registries: Iterable[RegistryConfig] = (),
        *,
        only: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.registries = list(registries)
        self.only = only
        self._environ = environ if environ is not None else os.environ

    def match(self, image: str) -> tuple[RegistryConfig, str] | None:
        """The registry ``image`` comes from and the image with a shorthand resolved, or None."""
        first, slash, rest = image.partition("/")
        for registry in self.registries:
            if slash and first == registry.name and image_host(image) == DOCKER_HUB:
                return registry, f"{registry.url}/{rest}"
        full = _full_name(image)
        for registry in self.registries:
            if image.startswith(f"{registry.url}/") or full.startswith(f"{registry.url}/"):
                return registry, image
        return None

    def resolve(self, image: str) -> str:
        """``image`` with a registry shorthand replaced by the registry's url."""
        found = self.match(image)
        return found[1] if found else image

    def allowed(self) -> str:
        """The allowed registries as a refusal names them: ``corp (registry.example.com/ml)``."""
        return ", ".join(f"{r.name} ({r.url})" for r in self.registries) or "none"

    def problem(self, image: str) -> str | None:
        """Why ``image`` is refused (``registries_only`` and from none of them), or None."""
        if not self.only or self.match(image) is not None:
            return None
        return f"image '{image}' is not from an allowed registry (allowed: {self.allowed()})"

    def spec_problems(self, spec: ExperimentSpec | NotebookSpec | ServeSpec) -> list[FieldProblem]:
        """A problem per image field of the spec that names a refused image."""
        fields: list[tuple[str, str | None]] = [
            ("environment.image", spec.environment.image),
            ("environment.dockerImage", spec.environment.dockerImage),
        ]
        if isinstance(spec, ExperimentSpec):
            fields += [(f"spec.{role}.image", task.image) for role, task in spec.spec.items()]
        problems = []
        for field, image in fields:
            reason = self.problem(image) if image else None
            if reason:
                problems.append(FieldProblem(field, reason))
        return problems

    def check_spec(self, spec: ExperimentSpec | NotebookSpec | ServeSpec, what: str) -> None:
        """Raise a 400 naming each refused image and the allowed registries."""
        problems = self.spec_problems(spec)
        if problems:
            raise BadRequest(problems_message(f"Invalid {what} spec", problems), problems=problems)

    def auth(self, registry: RegistryConfig) -> RegistryAuth | None:
        """The registry's credentials from the environment; None for a public registry or when a
        variable is unset (logged by name, never by value)."""
        if registry.username_env is None or registry.password_env is None:
            return None
        username = self._environ.get(registry.username_env)
        password = self._environ.get(registry.password_env)
        if not username or not password:
            missing = registry.username_env if not username else registry.password_env
            log.warning(
                "registry %s: %s is not set; its images are pulled without credentials",
                registry.name,
                missing,
            )
            return None
        remember_values(frozenset({password}))  # the log filter masks it should it ever be quoted
        host = registry.url.split("/", 1)[0]
        server = DOCKER_HUB_SERVER if host == DOCKER_HUB else host
        return RegistryAuth(
            registry=registry.name, server=server, username=username, password=SecretStr(password)
        )

    def for_plan(self, plan: LaunchPlan) -> LaunchPlan:
        """``plan`` with its images' shorthands resolved and the credentials of their registries."""
        if not self.registries:
            return plan
        update: dict[str, object] = {}
        auths: dict[str, RegistryAuth] = {}
        if plan.image:
            update["image"] = self.resolve(plan.image)
        env = plan.environment
        if env is not None and env.image:
            # The hash stays the environment's identity as submitted; only the pull name changes.
            update["environment"] = env.model_copy(update={"image": self.resolve(env.image)})
        for image in (plan.image, env.image if env is not None else None):
            found = self.match(image) if image else None
            if found is not None:
                auth = self.auth(found[0])
                if auth is not None:
                    auths[auth.registry] = auth
        if auths:
            update["registry_auth"] = auths
        return plan.model_copy(update=update) if update else plan
