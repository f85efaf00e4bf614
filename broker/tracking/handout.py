"""What dispatch gives each replica of an experiment attempt so that MLflow logs into its run."""

from __future__ import annotations

from broker.tracking.run_tokens import RunTokens
from runtimes.plan import LaunchPlan
from runtimes.tensorboard_sync import LOG_DIR_ENV

#: Where a replica writes TensorBoard event files: ``tensorboard/<replica>`` in its working
#: directory. Relative, since only the cluster kind knows that directory; launchers that know it
#: make it absolute (:func:`runtimes.tensorboard_sync.absolute_env`). One folder per replica:
#: replicas of an attempt may share a working directory.
TENSORBOARD_DIR = "tensorboard"


class TrackingHandout:
    """Adds the tracking environment to a plan: ``MLFLOW_TRACKING_URI`` (the broker),
    ``MLFLOW_RUN_ID`` (the attempt's run), ``MLFLOW_EXPERIMENT_ID``, and ``MLFLOW_TRACKING_TOKEN``,
    a token for that run alone naming the replica that holds it; and ``SUBMARINE_TENSORBOARD_LOG_DIR``
    (:data:`TENSORBOARD_DIR`), whose files reach the run's artifacts under ``tensorboard/<replica>/``
    where the cluster kind runs :mod:`runtimes.tensorboard_sync` beside the replica."""

    def __init__(self, tokens: RunTokens, uri: str) -> None:
        self.tokens = tokens
        self.uri = uri

    def apply(self, plan: LaunchPlan, experiment_id: int) -> None:
        """Give every replica of ``plan`` (an experiment attempt) its tracking environment."""
        for replica in plan.replicas:
            replica.env.update(
                {
                    "MLFLOW_TRACKING_URI": self.uri,
                    "MLFLOW_RUN_ID": plan.uid,
                    "MLFLOW_EXPERIMENT_ID": str(experiment_id),
                    "MLFLOW_TRACKING_TOKEN": self.tokens.issue(
                        plan.uid, experiment_id, replica.name, plan.workload_id
                    ),
                    LOG_DIR_ENV: f"{TENSORBOARD_DIR}/{replica.name}",
                }
            )
