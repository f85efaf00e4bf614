"""What the broker keeps on disk is its user's alone: the data directory is 0700, the database (and
SQLite's -wal/-shm beside it) and the secret key 0600, and a notebook's Jupyter token is never
stored in clear (encrypted with that key), yet the notebook still opens after a broker restart."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import text

from broker.secret_key import SecretBox, load_or_create_key
from broker.store.database import Database
from broker.store.migrate import current_revision, head_revision, upgrade
from tests.support import wait_for


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def notebook_spec(name: str) -> dict[str, object]:
    return {
        "meta": {"name": name, "namespace": "default"},
        "environment": {"name": "notebook-env"},
        "spec": {"resources": "cpu=0.2,memory=256Mi"},
    }


def test_data_dir_database_and_key_are_private(broker_factory) -> None:
    broker = broker_factory()
    data = broker.data_dir
    assert mode(data) == 0o700
    database = data / "broker.db"
    # WAL mode: -wal and -shm exist while the broker has the database open.
    wal, shm = Path(f"{database}-wal"), Path(f"{database}-shm")
    wait_for(lambda: wal.exists() and shm.exists(), what="SQLite's -wal and -shm files")
    for path in (database, wal, shm, data / "secret.key"):
        assert mode(path) == 0o600, f"{path.name} is {oct(mode(path))}"


def test_looser_existing_files_are_tightened_at_start_with_a_log_line(broker_factory) -> None:
    broker = broker_factory(start=False)
    data = broker.data_dir
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # whatever the umask
    database = data / "broker.db"
    # A database an older broker (or a CLI command) made with the default umask.
    db = Database(f"sqlite:///{database}")
    upgrade(db.engine)
    db.dispose()
    database.chmod(0o644)
    broker.start()
    assert mode(data) == 0o700 and mode(database) == 0o600
    log = broker.log()
    assert f"{data} was readable by other users (0755); now 0700" in log
    assert f"{database} was readable by other users (0644); now 0600" in log


def token_of(base_url: str) -> str:
    """The JUPYTER_TOKEN the server at ``base_url`` was started with (its process environment)."""

    def find() -> str | None:
        for proc in psutil.process_iter(["cmdline"]):
            if any(part.endswith(f"base_url={base_url}") for part in proc.info["cmdline"] or ()):
                try:
                    token = proc.environ().get("JUPYTER_TOKEN")
                except psutil.Error:
                    continue
                if token:
                    return token
        return None

    return wait_for(find, what=f"the Jupyter server at {base_url}")


def in_clear(secret: str, data: Path) -> list[str]:
    """The database files (broker.db, its -wal and -shm) whose raw bytes hold ``secret``."""
    return [
        path.name
        for path in sorted(data.glob("broker.db*"))
        if path.is_file() and secret.encode() in path.read_bytes()
    ]


def test_notebook_token_is_encrypted_at_rest_and_the_notebook_opens_after_a_restart(broker_factory) -> None:
    broker = broker_factory(notebooks={"check_interval": 0.3, "idle_timeout": 0})
    created = broker.client.post("/notebook", json=notebook_spec("private"))
    assert created.status_code == 200, created.text
    notebook_id = created.json()["result"]["notebookId"]

    def running() -> bool:
        answer = broker.client.get(f"/notebook/{notebook_id}").json()["result"]
        assert answer["status"] not in ("failed", "stopped"), answer
        return answer["status"] == "running"

    wait_for(running, timeout=120, what=f"notebook {notebook_id} running")
    token = token_of("/notebook/default/private/")
    proxy = f"{broker.url}/notebook/default/private/api/status"
    assert httpx.get(proxy, timeout=30).status_code == 200
    assert not in_clear(token, broker.data_dir)

    broker.stop()  # SQLite checkpoints the WAL into broker.db on the last close
    assert not in_clear(token, broker.data_dir)
    broker.start()
    wait_for(running, timeout=60, what=f"notebook {notebook_id} running after the restart")
    answer = httpx.get(proxy, timeout=30)
    assert answer.status_code == 200 and "last_activity" in answer.json()
    assert not in_clear(token, broker.data_dir)


LEGACY_TOKEN = "legacy-plaintext-token-0123456789abcdefghijklmnopq"


def insert_legacy_notebook(db: Database) -> None:
    """A notebook row as a broker before migration 0006 wrote it: its token in clear."""
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO experiment (id, uid, attempt, name, namespace, owner, framework, status, spec, "
                "priority, dispatch_tries, accepted_at, updated_at, kind, slot, access_token) VALUES "
                "('notebook_1_0001', 'u1', 1, 'nb', 'default', 'admin', 'notebook', 'Running', '{}', 0, 0, "
                "'2026-01-01 00:00:00', '2026-01-01 00:00:00', 'notebook', 'notebook:default/nb', :token)"
            ),
            {"token": LEGACY_TOKEN},
        )


def test_migration_encrypts_tokens_stored_in_clear(tmp_path: Path) -> None:
    """A database written before tokens were encrypted: upgrading encrypts them in place."""
    database = tmp_path / "broker.db"
    db = Database(f"sqlite:///{database}")
    upgrade(db.engine, "0005")
    insert_legacy_notebook(db)
    box = SecretBox(load_or_create_key(tmp_path / "secret.key"))
    upgrade(db.engine, secrets=box)
    assert current_revision(db.engine) == head_revision()
    with db.engine.connect() as conn:
        stored = conn.execute(text("SELECT access_token FROM experiment")).scalar_one()
    assert stored != LEGACY_TOKEN and box.decrypt(stored) == LEGACY_TOKEN
    db.dispose()
    assert not in_clear(LEGACY_TOKEN, tmp_path)


@pytest.mark.postgres
def test_migration_encrypts_tokens_on_postgresql(pg_url: str) -> None:
    """The encrypted token is longer than the column earlier brokers made: the migration widens it."""
    db = Database(pg_url)
    upgrade(db.engine, "0005")
    insert_legacy_notebook(db)
    box = SecretBox.ephemeral()
    upgrade(db.engine, secrets=box)
    with db.engine.connect() as conn:
        stored = conn.execute(text("SELECT access_token FROM experiment")).scalar_one()
    assert len(stored) > 128 and box.decrypt(stored) == LEGACY_TOKEN
    db.dispose()


def test_migration_without_the_key_refuses_to_leave_tokens_in_clear(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'broker.db'}")
    upgrade(db.engine, "0005")
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO experiment (id, uid, attempt, name, namespace, owner, framework, status, spec, "
                "priority, dispatch_tries, accepted_at, updated_at, kind, access_token) VALUES "
                "('notebook_1_0002', 'u2', 1, 'nb', 'default', 'admin', 'notebook', 'Running', '{}', 0, 0, "
                "'2026-01-01 00:00:00', '2026-01-01 00:00:00', 'notebook', 'tok')"
            )
        )
    with pytest.raises(RuntimeError, match="secret key"):
        upgrade(db.engine)
    assert current_revision(db.engine) == "0005"
    db.dispose()


def test_a_broker_with_another_key_refuses_to_start(broker_factory, tmp_path: Path) -> None:
    """Every replica needs the same key: one that could not read the stored tokens says so at start."""
    broker = broker_factory(loops={"dispatch_paused": True})
    created = broker.client.post("/notebook", json=notebook_spec("keyed"))
    assert created.status_code == 200, created.text
    broker.stop()
    other = tmp_path / "other.key"
    load_or_create_key(other)
    replica = broker_factory(
        start=False, name="replica", secret_key_file=str(other), loops={"dispatch_paused": True}
    )  # nothing starts the notebook: a test must leave no Jupyter server behind
    replica.config_path.write_text(
        replica.config_path.read_text() + f"database_url: sqlite:///{broker.data_dir / 'broker.db'}\n"
    )
    replica.start(wait=False)
    assert replica.proc is not None
    assert replica.proc.wait(timeout=60) != 0
    assert f"secret key {other} is not the key" in replica.log()
    # The first key lost for good: adopt the other one, clearing what only the lost one could read.
    reset = subprocess.run(
        [sys.executable, "-m", "broker", "db", "reset-secret-key", "--config", str(replica.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reset.returncode == 0, reset.stderr
    assert f"secret key {other} adopted; 1 notebook token(s) cleared" in reset.stdout
    replica.start()
    assert replica.client.get("/notebook").json()["result"][0]["name"] == "keyed"


def test_a_shared_folder_given_as_data_dir_keeps_its_mode(tmp_path: Path, caplog) -> None:
    from broker.private_files import private_dir

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    with caplog.at_level("WARNING"):
        private_dir(shared)
    assert mode(shared) == 0o1777
    assert "is a shared folder (mode 1777)" in caplog.text
