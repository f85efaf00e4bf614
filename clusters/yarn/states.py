"""What YARN says about a service, read as a :class:`~clusters.base.Phase`.

Five tables, each read through :func:`clusters.batch.base.read_state` (an unknown word is
UNKNOWN, never a failure):

* ``SERVICE_STATES``, ``COMPONENT_STATES``, ``CONTAINER_STATES``: the ``ServiceState``,
  ``ComponentState`` and ``ContainerState`` enums of the Services API (the swagger file
  ``YARN-Simplified-V1-API-Layer-For-Services.yaml``), plus the words older releases used
  (``INIT``, ``STARTED``, ``CANCEL_UPGRADING`` as in ``YarnServiceAPI.md``).
* ``APP_STATES`` and ``FINAL_STATUSES``: ``YarnApplicationState`` and ``FinalApplicationStatus``
  of the ResourceManager's application reports (``/ws/v1/cluster/apps``), which are all that is
  left once a service's ApplicationMaster has exited. A finished batch service is then
  ``FINISHED`` with final status ``SUCCEEDED`` or ``FAILED`` (a stop through the API ends it
  ``ENDED``, a kill ``KILLED``); the Services API itself reports ``STOPPED`` for all of those.

A service state says how the whole attempt ends (``SUCCEEDED``, ``FAILED``, ``STOPPED``); while
it runs (``STARTED``, ``STABLE``, ``FLEX``, the upgrade states) the containers decide, through
:func:`clusters.base.summarise` (gang semantics: any failed replica fails the attempt).
"""

from __future__ import annotations

from clusters.base import Phase
from clusters.batch.base import NativeState

P, R, S, F = Phase.PENDING, Phase.RUNNING, Phase.SUCCEEDED, Phase.FAILED

#: Services API ``ServiceState``.
SERVICE_STATES: dict[str, NativeState] = {
    "ACCEPTED": NativeState(P, None, "submitted; the ApplicationMaster has not started yet"),
    "STARTED": NativeState(R, None, "the ApplicationMaster runs and requests containers"),
    "STABLE": NativeState(R, None, "every component has its containers"),
    "FLEX": NativeState(R, None, "components are being resized"),
    "UPGRADING": NativeState(R, None, "an upgrade is in progress"),
    "UPGRADING_AUTO_FINALIZE": NativeState(R, None, "an upgrade is in progress"),
    "EXPRESS_UPGRADING": NativeState(R, None, "an express upgrade is in progress"),
    "CANCEL_UPGRADING": NativeState(R, None, "an upgrade is being cancelled"),
    "SUCCEEDED": NativeState(S, None, "every component finished successfully"),
    "FAILED": NativeState(F, "exit_code", "a component failed"),
    "STOPPED": NativeState(F, "killed", "the service was stopped before it finished"),
}

#: Services API ``ComponentState`` (``INIT`` and ``CANCEL_UPGRADING`` from older releases).
COMPONENT_STATES: dict[str, NativeState] = {
    "INIT": NativeState(P, None, "not started"),
    "FLEXING": NativeState(P, None, "waiting for containers"),
    "STABLE": NativeState(R, None, "every container is up"),
    "NEEDS_UPGRADE": NativeState(R, None, "running an older version"),
    "UPGRADING": NativeState(R, None, "being upgraded"),
    "CANCEL_UPGRADING": NativeState(R, None, "an upgrade is being cancelled"),
    "SUCCEEDED": NativeState(S, None, "every instance finished successfully"),
    "FAILED": NativeState(F, "exit_code", "an instance failed"),
}

#: Services API ``ContainerState`` (``INIT`` and ``STARTED`` from older releases).
CONTAINER_STATES: dict[str, NativeState] = {
    "INIT": NativeState(P, None, "allocated, not launched"),
    "STARTED": NativeState(R, None, "launched"),
    "RUNNING_BUT_UNREADY": NativeState(R, None, "running, readiness check not passed yet"),
    "READY": NativeState(R, None, "running and ready"),
    "NEEDS_UPGRADE": NativeState(R, None, "running an older version"),
    "UPGRADING": NativeState(R, None, "being upgraded"),
    "SUCCEEDED": NativeState(S, None, "exited with code 0"),
    "FAILED": NativeState(F, "exit_code", "exited with an error"),
    "FAILED_UPGRADE": NativeState(F, "exit_code", "failed while being upgraded"),
    "STOPPED": NativeState(F, "killed", "stopped by YARN"),
}

#: ResourceManager ``YarnApplicationState``; the three final states are refined by the final status.
APP_STATES: dict[str, NativeState] = {
    "NEW": NativeState(P, None, "being created"),
    "NEW_SAVING": NativeState(P, None, "being saved"),
    "SUBMITTED": NativeState(P, None, "submitted to the scheduler"),
    "ACCEPTED": NativeState(P, None, "waiting for its ApplicationMaster container"),
    "RUNNING": NativeState(R, None, "the ApplicationMaster runs"),
    "FINISHED": NativeState(S, None, "the ApplicationMaster finished"),
    "FAILED": NativeState(F, "exit_code", "the ApplicationMaster failed"),
    "KILLED": NativeState(F, "killed", "the application was killed"),
}

#: ResourceManager ``FinalApplicationStatus`` (``ENDED``: what a stop through the Services API leaves).
FINAL_STATUSES: dict[str, NativeState] = {
    "UNDEFINED": NativeState(Phase.UNKNOWN, None, "no final status yet"),
    "SUCCEEDED": NativeState(S, None, "the service succeeded"),
    "FAILED": NativeState(F, "exit_code", "the service failed"),
    "KILLED": NativeState(F, "killed", "the service was killed"),
    "ENDED": NativeState(F, "killed", "the service was stopped before it finished"),
}

#: Application states after which the ApplicationMaster is gone.
FINAL_APP_STATES = frozenset({"FINISHED", "FAILED", "KILLED"})
#: Application states before the ApplicationMaster runs.
EARLY_APP_STATES = frozenset({"NEW", "NEW_SAVING", "SUBMITTED", "ACCEPTED"})
