"""Who runs a local cluster's work: ``run_as`` resolved to Unix accounts, and the rules around it.

A replica runs as the run-as user of its namespace, with that user's primary group and no
supplementary groups; the broker's own user (``run_as: broker``, or no ``run_as`` at all) means no
switch. Switching users needs root. A broker that serves several people (``auth: token``) must
not run their work as itself: :func:`host_user_problem` says why and what to set.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from clusters.local.config import BROKER_USER, LocalClusterConfig


@dataclass(frozen=True)
class Account:
    """A Unix user a replica runs as: name, uid and primary gid."""

    name: str
    uid: int
    gid: int

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "uid": self.uid, "gid": self.gid}


class NoSuchUser(LookupError):
    """A run-as user that does not exist (any more) on this host."""


def account(name: str) -> Account:
    """The account of user ``name``; :class:`NoSuchUser` when the host has none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise NoSuchUser(f"run-as user {name} does not exist on this host") from None
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def broker_user() -> str:
    """The broker's own user name (its uid when the host has no name for it)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def can_switch_users() -> bool:
    """True when this process may start children as other users (it runs as root)."""
    return os.geteuid() == 0


def account_for(config: LocalClusterConfig, namespace: str) -> Account | None:
    """The account ``namespace``'s work runs as; None for the broker's own user.

    Raises :class:`NoSuchUser` for a user gone from the host and :class:`LookupError` when the
    ``run_as`` map covers no such namespace.
    """
    name = config.run_as_for(namespace)
    if name is None:
        raise LookupError(namespace_refusal(namespace))
    if name == BROKER_USER:
        return None
    found = account(name)
    return None if found.uid == os.geteuid() else found


def namespace_refusal(namespace: str) -> str:
    return f"runs no work of namespace {namespace}: its run_as names no user for it (nor '*')"


def host_user_problem(config: LocalClusterConfig, *, multi_user: bool) -> tuple[str, str] | None:
    """``(key, reason)`` when this broker must not run ``config``'s work as configured, else None.

    ``multi_user`` is True for a broker that serves several people (``auth: token``): then work must
    not run as the broker's own user (which reads the database, every team's files and the
    broker's secrets) unless the file says ``run_as: broker`` and the broker is not root. Any
    ``run_as`` user other than the broker's needs a broker running as root.
    """
    root = os.geteuid() == 0
    me = "root" if root else f"the broker's user ({broker_user()})"
    if config.run_as is None:
        if not multi_user:
            return None
        how = "set run_as to an unprivileged user, or to a map from namespace to user ('*' for the rest)"
        if not root:
            how += " (switching users needs a broker running as root), or run_as: broker to accept sharing it"
        return (
            "run_as",
            f"not set, so this local cluster would run every command as {me}, the broker's own user: "
            "with auth: token any user's experiment or notebook could read the broker's database, its "
            f"secrets and every team's files; {how}",
        )
    users = config.run_as_users()
    if BROKER_USER in users and root and multi_user:
        return (
            "run_as",
            "the broker's own user is root here, and with auth: token users' work must not run as root; "
            "name an unprivileged user (or one per namespace) instead",
        )
    if any(user not in (BROKER_USER, broker_user()) for user in users) and not can_switch_users():
        return (
            "run_as",
            f"switching to another user needs a broker running as root, and this one runs as {me}; "
            "run the broker as root, or set run_as: broker",
        )
    return None


def unreachable_folder(user: Account, path: Path) -> Path | None:
    """The first folder on the way to ``path`` (``path`` excluded) that ``user`` may not enter.

    Judged by owner, group (the user's primary group: replicas get no other) and mode bits.
    """
    for folder in reversed(path.parents):
        try:
            info = folder.stat()
        except OSError:
            return folder
        if info.st_uid == user.uid:
            bit = stat.S_IXUSR
        elif info.st_gid == user.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return folder
    return None
