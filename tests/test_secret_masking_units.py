"""The one masking function (clusters/secrets.py) over every kind's secrets, and the broker's log
filter built on it."""

from __future__ import annotations

import logging

import pytest

from broker import redaction
from clusters.config import ClusterConfig
from clusters.kubernetes.config import KubernetesClusterConfig
from clusters.ray.config import RayClusterConfig
from clusters.secrets import MASK, mask, mask_url
from clusters.slurm.config import SlurmClusterConfig
from clusters.yarn.config import YarnClusterConfig


def test_ray_address_userinfo_and_headers_are_masked_in_the_view_and_in_text() -> None:
    config = RayClusterConfig(
        name="ray-east",
        address="http://admin:p%40ss-W0rd@10.0.0.5:8265",
        headers={"Authorization": "Bearer TOKEN-abc-123", "X-Other": "plainvalue-secret"},
    )
    view = config.public_view()
    assert view["address"] == "http://******@10.0.0.5:8265"
    assert view["headers"] == MASK
    assert view["entrypoint_python"] == "python"  # the rest is shown as it is
    said = config.mask(
        "Ray at http://admin:p%40ss-W0rd@10.0.0.5:8265 refused p@ss-W0rd, TOKEN-abc-123 and plainvalue-secret"
    )
    assert said == f"Ray at http://{MASK}@10.0.0.5:8265 refused {MASK}, {MASK} and {MASK}"


@pytest.mark.parametrize(
    ("config", "secret", "field"),
    [
        (
            KubernetesClusterConfig(name="k", token="kube-token-123456", in_cluster=True),
            "kube-token-123456",
            "token",
        ),
        (
            SlurmClusterConfig(
                name="s", mode="rest", rest_url="http://u:slurm-pw-1@h:6820", user="u", token="jwt.abc.def"
            ),
            "jwt.abc.def",
            "token",
        ),
        (
            YarnClusterConfig(name="y", rm_url="https://svc:yarn-pw-22@rm:8088", user="svc"),
            "yarn-pw-22",
            "rm_url",
        ),
    ],
)
def test_every_kind_masks_its_secret_fields_and_url_credentials(
    config: ClusterConfig, secret: str, field: str
) -> None:
    assert secret in config.secret_values()
    assert secret not in str(config.public_view())
    assert config.public_view()[field] in (MASK, "https://******@rm:8088")
    assert config.mask(f"the cluster said {secret}!") == f"the cluster said {MASK}!"


def test_a_user_without_password_is_the_credential() -> None:
    config = RayClusterConfig(name="r", address="https://tok3n-only@ray.example")
    assert config.public_view()["address"] == "https://******@ray.example"
    assert config.mask("token tok3n-only was refused") == f"token {MASK} was refused"


def test_urls_with_credentials_are_masked_even_when_unknown_and_plain_urls_are_kept() -> None:
    assert mask_url("GET http://x:y@h/p failed; see https://h:8080/a@b") == (
        f"GET http://{MASK}@h/p failed; see https://h:8080/a@b"
    )
    assert mask("nothing secret here", ["abc"]) == "nothing secret here"  # too short to mask in text


def test_the_log_filter_masks_known_secrets_in_messages_and_tracebacks() -> None:
    config = RayClusterConfig(
        name="r", address="http://h:1", headers={"Authorization": "Bearer LoggedTok-77"}
    )
    redaction.remember(config)
    record = logging.LogRecord(
        "t", logging.ERROR, __file__, 1, "call with %s", ("Bearer LoggedTok-77",), None
    )
    try:
        raise RuntimeError("header LoggedTok-77 refused")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert redaction.RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "LoggedTok-77" not in text
    assert f"call with {MASK}" in text and f"header {MASK} refused" in text
