"""The model registry through :class:`ModelRegistry` on SQLite and PostgreSQL: models, versions
from every kind of source, stages, aliases, tags, history, permissions, search and paging."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.errors import BadRequest, Conflict, NotFound
from broker.guard import Forbidden
from broker.model_registry.service import NotAcceptable
from broker.store.database import Database
from broker.tracking import runs
from tests.registry_support import World, open_database, run


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from open_database(request.param, request, tmp_path)


@pytest.fixture
def world(db: Database, tmp_path: Path) -> World:
    return World(db, tmp_path)


MODEL_FILES = {"model/MLmodel": b"flavors: {}\n", "model/model.pkl": b"\x00weights", "notes.txt": b"n"}


def test_versions_from_a_run_are_numbered_and_keep_their_lineage(world: World) -> None:
    alice = world.caller("alice")
    run_id = world.run_with("vision", MODEL_FILES, tags={"submarine.cluster": "gpu-east"})
    created = run(world.models.create_model(alice, "cats", description="finds cats"))
    assert (created.name, created.namespace, created.user_id) == ("cats", "vision", "alice")
    first = run(world.models.create_version(alice, "cats", source=f"runs:/{run_id}/model"))
    second = run(
        world.models.create_version(alice, "cats", source=f"runs:/{run_id}/model", description="again")
    )
    assert (first.version, second.version) == (1, 2)
    assert first.current_stage == "None" and first.status == "READY"
    assert first.lineage.run_id == run_id
    assert first.lineage.cluster == "gpu-east"
    assert first.lineage.tracking_experiment_id == str(world.experiment("vision"))
    assert first.download_uri == f"mlflow-artifacts:/registry/{created.model_key}/1"
    files = run(world.models.list_files(alice, created.model_key, 1, ""))
    assert [(f.path, f.is_dir, f.file_size) for f in files] == [
        ("MLmodel", False, 12),
        ("model.pkl", False, 8),
    ]
    assert world.read(alice, created.model_key, 1, "model.pkl") == b"\x00weights"
    listed = run(world.models.list_versions(alice, "cats"))
    assert [v.version for v in listed] == [1, 2]
    got = run(world.models.get_model(alice, "cats"))
    assert [v.version for v in got.latest_versions] == [2]


def test_names_are_unique_and_checked(world: World) -> None:
    alice, bob = world.caller("alice"), world.caller("bob")
    run(world.models.create_model(alice, "cats"))
    with pytest.raises(Conflict, match=r"Registered Model \(name=cats\) already exists"):
        run(world.models.create_model(bob, "cats"))
    for bad in ("", "a/b", "a:b", "x" * 257, "tab\there"):
        with pytest.raises(BadRequest) as refused:
            run(world.models.create_model(alice, bad))
        assert refused.value.field == "name"
    with pytest.raises(BadRequest) as refused:
        run(world.models.create_model(alice, "dogs", namespace="Not A Team"))
    assert refused.value.field == "namespace"
    run(world.models.create_model(alice, "dogs"))
    with pytest.raises(Conflict):
        run(world.models.update_model(alice, "dogs", new_name="cats"))
    assert run(world.models.get_model(alice, "dogs")).name == "dogs"


def test_another_teams_model_is_not_found_anywhere(world: World) -> None:
    alice, bob = world.caller("alice"), world.caller("bob")
    run_id = world.run_with("vision", MODEL_FILES)
    model = run(world.models.create_model(alice, "cats"))
    run(world.models.create_version(alice, "cats", source=f"runs:/{run_id}/model"))
    missing = "Registered Model with name=cats not found"
    for attempt in (
        world.models.get_model(bob, "cats"),
        world.models.list_versions(bob, "cats"),
        world.models.get_version(bob, "cats", 1),
        world.models.history(bob, "cats"),
        world.models.history(bob, "cats", 1),
        world.models.update_model(bob, "cats", description="mine now"),
        world.models.update_version(bob, "cats", 1, stage="Production"),
        world.models.set_alias(bob, "cats", "champion", 1),
        world.models.delete_model(bob, "cats"),
        world.models.create_version(bob, "cats", source=f"runs:/{run_id}/model"),
    ):
        with pytest.raises(NotFound, match=missing):
            run(attempt)
    for attempt in (
        world.models.list_files(bob, model.model_key, 1, ""),
        world.models.open_file(bob, model.model_key, 1, "MLmodel"),
    ):
        with pytest.raises(NotFound, match=f"registry/{model.model_key}/1"):
            run(attempt)
    with pytest.raises(NotFound, match=missing.replace("cats", "ghost")):
        run(world.models.get_model(alice, "ghost"))
    assert run(world.models.search_models(bob)).items == []
    assert run(world.models.search_versions(bob)).items == []
    assert [m.name for m in run(world.models.search_models(world.caller("root"))).items] == ["cats"]
    assert world.event_count() == 2  # nothing bob tried left a trace


def test_a_version_source_must_be_readable_by_the_caller(world: World) -> None:
    alice, bob = world.caller("alice"), world.caller("bob")
    theirs = world.run_with("nlp", MODEL_FILES, user="bob")
    run(world.models.create_model(alice, "cats"))
    for source in (
        f"runs:/{theirs}/model",
        f"mlflow-artifacts:/{world.artifacts_of(theirs)}/model",
        f"{world.artifacts_of(theirs)}/model",
        "runs:/0123456789abcdef0123456789abcdef/model",
    ):
        with pytest.raises(NotFound) as refused:
            run(world.models.create_version(alice, "cats", source=source))
        assert refused.value.field == "source", source
    for source in ("s3://bucket/model", "file:///etc/passwd", "gs://x/y", "", "runs:/", "../escape"):
        with pytest.raises(BadRequest) as refused:
            run(world.models.create_version(alice, "cats", source=source))
        assert refused.value.field == "source", source
    mine = world.run_with("vision", MODEL_FILES)
    with pytest.raises(BadRequest, match="no files"):
        run(world.models.create_version(alice, "cats", source=f"runs:/{mine}/nothing-here"))
    with pytest.raises(NotFound) as refused:
        run(world.models.create_version(alice, "cats", source=f"runs:/{mine}/model", run_id=theirs))
    assert refused.value.field == "run_id"
    assert run(world.models.list_versions(alice, "cats")) == []
    assert world.blobs() == []
    del bob


def test_every_source_form_registers_the_same_files(world: World) -> None:
    alice = world.caller("alice")
    run_id = world.run_with("vision", MODEL_FILES)
    root = world.artifacts_of(run_id)
    run(world.models.create_model(alice, "cats"))
    sources = [
        f"runs:/{run_id}/model",
        f"mlflow-artifacts:/{root}/model",
        f"{root}/model",
        f"http://broker.example:5000/api/2.0/mlflow-artifacts/artifacts/{root}/model",
        "models:/cats/1",
        "models:/cats/latest",
    ]
    made = [run(world.models.create_version(alice, "cats", source=s)) for s in sources]
    run(world.models.set_alias(alice, "cats", "champion", 2))
    made.append(run(world.models.create_version(alice, "cats", source="models:/cats@champion")))
    key = made[0].model_key
    for view in made:
        listing = run(world.models.list_files(alice, key, view.version, ""))
        assert [f.path for f in listing] == ["MLmodel", "model.pkl"], view.source
        assert view.lineage.run_id == run_id, view.source
    assert [v.source for v in made[:6]] == sources
    assert len(world.blobs()) == 2
    # A single file can be a source too, registered under its name.
    single = run(world.models.create_version(alice, "cats", source=f"runs:/{run_id}/notes.txt"))
    assert [f.path for f in run(world.models.list_files(alice, key, single.version, ""))] == ["notes.txt"]
    # Only this broker's artifact API is a source, when the caller says which host it is.
    pinned = world.caller("alice")
    pinned = type(pinned)(pinned.guard, None, "vision", "broker.example:5000")
    with pytest.raises(BadRequest, match="not this broker"):
        run(
            world.models.create_version(
                pinned, "cats", source=f"http://elsewhere/api/2.0/mlflow-artifacts/artifacts/{root}/model"
            )
        )


def test_a_logged_model_is_a_source_and_runs_path_falls_back_to_it(world: World) -> None:
    from broker.tracking import logged_models

    alice = world.caller("alice")
    run_id = world.run_with("vision", {"notes.txt": b"n"})
    experiment_id = world.experiment("vision")
    model_id = world.db.call(
        lambda s: logged_models.create(
            s,
            experiment_id=experiment_id,
            namespace="vision",
            name="model",
            model_type=None,
            source_run_id=run_id,
            params=[],
            tags=[],
        )
    )
    from tests.artifact_contract import chunks_of

    run(world.store.put(f"{experiment_id}/models/{model_id}/artifacts/MLmodel", chunks_of(b"logged")))
    run(world.models.create_model(alice, "cats"))
    direct = run(world.models.create_version(alice, "cats", source=f"models:/{model_id}", model_id=model_id))
    fallback = run(world.models.create_version(alice, "cats", source=f"runs:/{run_id}/model"))
    for view in (direct, fallback):
        assert view.logged_model_id == model_id
        assert view.lineage.run_id == run_id
        assert world.read(alice, view.model_key, view.version, "MLmodel") == b"logged"
    with pytest.raises(NotFound):
        run(world.models.create_version(world.caller("bob"), "cats", source=f"models:/{model_id}"))


def test_a_run_token_registers_only_its_own_run(world: World) -> None:
    from broker.tracking.scope import RunScope

    mine = world.run_with("vision", MODEL_FILES)
    other = world.run_with("vision", MODEL_FILES)
    token = world.caller("alice", scope=RunScope(mine, world.experiment("vision"), "worker-0"))
    made = run(world.models.create_version(token, "cats", source=f"runs:/{mine}/model", create_model=True))
    assert (made.version, made.namespace, made.user_id) == (1, "vision", "alice")
    with pytest.raises(Forbidden, match="own run"):
        run(world.models.create_version(token, "cats", source=f"runs:/{other}/model"))
    with pytest.raises(Forbidden):
        run(world.models.create_version(token, "cats", source="models:/cats/1"))
    for attempt in (
        world.models.update_version(token, "cats", 1, stage="Production"),
        world.models.set_alias(token, "cats", "champion", 1),
        world.models.delete_model(token, "cats"),
        world.models.set_model_tag(token, "cats", "k", "v"),
    ):
        with pytest.raises(Forbidden, match="run token"):
            run(attempt)
    events = run(world.models.history(world.caller("amy"), "cats"))
    assert [(e.action, e.actor, e.message) for e in events] == [
        ("model_created", "alice", f"(via run {mine})"),
        ("version_created", "alice", f"from runs:/{mine}/model (via run {mine})"),
    ]


def test_deleting_a_model_with_a_production_version_is_refused_and_history_stays(world: World) -> None:
    alice, amy, bob = world.caller("alice"), world.caller("amy"), world.caller("bob")
    run_id = world.run_with("vision", MODEL_FILES)
    run(world.models.create_model(alice, "cats"))
    run(world.models.create_version(alice, "cats", source=f"runs:/{run_id}/model"))
    run(world.models.update_version(alice, "cats", 1, stage="production", message="ship it"))
    with pytest.raises(NotAcceptable, match="version 1 in Production"):
        run(world.models.delete_model(alice, "cats"))
    assert run(world.models.get_model(alice, "cats")).name == "cats"
    run(world.models.update_version(amy, "cats", 1, stage="Archived"))
    run(world.models.delete_model(amy, "cats"))
    with pytest.raises(NotFound):
        run(world.models.get_model(alice, "cats"))
    events = run(world.models.history(alice, "cats"))
    assert [(e.action, e.actor, e.from_value, e.to_value) for e in events] == [
        ("model_created", "alice", None, "cats"),
        ("version_created", "alice", None, "1"),
        ("stage_changed", "alice", "None", "Production"),
        ("stage_changed", "amy", "Production", "Archived"),
        ("model_deleted", "amy", "cats", None),
    ]
    assert events[2].message == "ship it"
    assert [e.action for e in run(world.models.history(alice, "cats", 1))] == [
        "version_created",
        "stage_changed",
        "stage_changed",
    ]
    with pytest.raises(NotFound):
        run(world.models.history(bob, "cats"))
    # A new model of the same name starts a history of its own.
    run(world.models.create_model(alice, "cats"))
    assert [e.action for e in run(world.models.history(alice, "cats"))] == ["model_created"]


def test_every_change_is_one_event_with_its_actor_and_values(world: World) -> None:
    alice, amy = world.caller("alice"), world.caller("amy")
    run_id = world.run_with("vision", MODEL_FILES)
    models = world.models
    steps = [
        (
            models.create_model(alice, "cats", tags=[("team", "vision")]),
            ("model_created", "alice", None, None, "cats"),
        ),
        (
            models.create_version(alice, "cats", source=f"runs:/{run_id}/model"),
            ("version_created", "alice", 1, None, "1"),
        ),
        (
            models.create_version(alice, "cats", source=f"runs:/{run_id}/model"),
            ("version_created", "alice", 2, None, "2"),
        ),
        (
            models.set_model_tag(amy, "cats", "team", "vision-2"),
            ("model_tag_set", "amy", None, "vision", "vision-2"),
        ),
        (models.delete_model_tag(amy, "cats", "team"), ("model_tag_deleted", "amy", None, "vision-2", None)),
        (models.set_version_tag(alice, "cats", 1, "ok", "yes"), ("version_tag_set", "alice", 1, None, "yes")),
        (models.delete_version_tag(alice, "cats", 1, "ok"), ("version_tag_deleted", "alice", 1, "yes", None)),
        (models.set_alias(alice, "cats", "champion", 1), ("alias_set", "alice", 1, None, "1")),
        (models.set_alias(amy, "cats", "champion", 2), ("alias_set", "amy", 2, "1", "2")),
        (
            models.update_version(amy, "cats", 2, description="better"),
            ("description_changed", "amy", 2, "", "better"),
        ),
        (
            models.update_version(amy, "cats", 2, dataset="imagenet"),
            ("dataset_changed", "amy", 2, None, "imagenet"),
        ),
        (
            models.update_version(alice, "cats", 1, stage="Staging"),
            ("stage_changed", "alice", 1, "None", "Developing"),
        ),
        (
            models.update_model(alice, "cats", description="finds cats"),
            ("description_changed", "alice", None, "", "finds cats"),
        ),
        (
            models.update_model(amy, "cats", new_name="felines"),
            ("model_renamed", "amy", None, "cats", "felines"),
        ),
        (models.delete_alias(alice, "felines", "champion"), ("alias_deleted", "alice", 2, "2", None)),
        (models.delete_version(alice, "felines", 1), ("version_deleted", "alice", 1, "1", None)),
    ]
    for change, expected in steps:
        before = world.event_count()
        run(change)
        assert world.event_count() == before + 1, expected
        last = run(
            models.history(
                alice,
                "felines" if expected[0] in ("model_renamed", "alias_deleted", "version_deleted") else "cats",
            )
        )[-1]
        assert (last.action, last.actor, last.version, last.from_value, last.to_value) == expected
    # What changes nothing records nothing.
    before = world.event_count()
    run(models.set_alias(alice, "felines", "stable", 2))
    run(models.set_alias(alice, "felines", "stable", 2))
    run(models.update_version(alice, "felines", 2, description="better", stage="None"))
    run(models.update_model(alice, "felines", new_name="felines", description="finds cats"))
    assert world.event_count() == before + 1
    events = run(models.history(alice, "felines"))
    assert {e.model_name for e in events} == {"cats", "felines"}
    assert [e.message for e in events if e.action.startswith("alias")] == ["alias champion"] * 3 + [
        "alias stable"
    ]
    assert [e.message for e in events if e.action.startswith("model_tag")] == ["tag team", "tag team"]


def test_stage_names_and_archiving_the_others(world: World) -> None:
    alice = world.caller("alice")
    run_id = world.run_with("vision", MODEL_FILES)
    run(world.models.create_model(alice, "cats"))
    for _ in range(3):
        run(world.models.create_version(alice, "cats", source=f"runs:/{run_id}/model"))
    shown = [
        run(world.models.update_version(alice, "cats", 1, stage=s)).current_stage
        for s in ("staging", "DEVELOPING", "production", "none", "Archived", " Production ")
    ]
    assert shown == ["Developing", "Developing", "Production", "None", "Archived", "Production"]
    for bad in ("Prod", "", "Staged"):
        with pytest.raises(BadRequest) as refused:
            run(world.models.update_version(alice, "cats", 1, stage=bad))
        assert refused.value.field == "stage"
    run(world.models.update_version(alice, "cats", 2, stage="Production"))
    before = world.event_count()
    moved = run(world.models.update_version(alice, "cats", 3, stage="Production", archive_existing=True))
    assert moved.current_stage == "Production"
    assert [v.current_stage for v in run(world.models.list_versions(alice, "cats"))] == [
        "Archived",
        "Archived",
        "Production",
    ]
    assert world.event_count() == before + 3
    latest = run(world.models.latest_versions(alice, "cats"))
    assert [(v.version, v.current_stage) for v in latest] == [(3, "Production"), (2, "Archived")]
    assert [v.version for v in run(world.models.latest_versions(alice, "cats", ["archived"]))] == [2]
    assert run(world.models.latest_versions(alice, "cats", ["Staging"])) == []


def test_alias_rules(world: World) -> None:
    alice = world.caller("alice")
    run_id = world.run_with("vision", MODEL_FILES)
    run(world.models.create_model(alice, "cats"))
    run(world.models.create_version(alice, "cats", source=f"runs:/{run_id}/model"))
    for bad in ("latest", "LATEST", "v1", "V22", "has space", "a/b", "", "x" * 256):
        with pytest.raises(BadRequest) as refused:
            run(world.models.set_alias(alice, "cats", bad, 1))
        assert refused.value.field == "alias", bad
    for good in ("champion", "v1-candidate", "version1", "ü-ok"):
        run(world.models.set_alias(alice, "cats", good, 1))
    with pytest.raises(NotFound, match=r"Model Version \(name=cats, version=7\) not found"):
        run(world.models.set_alias(alice, "cats", "champion", 7))
    assert run(world.models.version_by_alias(alice, "cats", "champion")).version == 1
    assert run(world.models.get_model(alice, "cats")).aliases["champion"] == 1
    assert "champion" in run(world.models.get_version(alice, "cats", 1)).aliases
    with pytest.raises(NotFound, match="alias nope"):
        run(world.models.version_by_alias(alice, "cats", "nope"))
    with pytest.raises(NotFound, match="alias nope"):
        run(world.models.delete_alias(alice, "cats", "nope"))
    before = world.event_count()
    run(world.models.delete_version(alice, "cats", 1))
    assert world.event_count() == before + 5  # four aliases went with the version, then the version
    assert run(world.models.get_model(alice, "cats")).aliases == {}


def test_search_filters_order_and_pages(world: World) -> None:
    alice, root = world.caller("alice"), world.caller("root")
    run_a = world.run_with("vision", MODEL_FILES)
    run_b = world.run_with("vision", MODEL_FILES)
    for name in ("alpha", "Beta", "gamma", "delta-prompt"):
        run(world.models.create_model(alice, name, tags=[("kind", name[0])]))
    run(world.models.set_model_tag(alice, "delta-prompt", "mlflow.prompt.is_prompt", "true"))
    run(world.models.create_model(world.caller("bob"), "nlp-only"))
    names = lambda page: [m.name for m in page.items]  # noqa: E731
    assert names(run(world.models.search_models(alice))) == ["Beta", "alpha", "delta-prompt", "gamma"]
    prompt_free = "tag.`mlflow.prompt.is_prompt` != 'true'"
    assert names(run(world.models.search_models(alice, filter=prompt_free))) == ["Beta", "alpha", "gamma"]
    assert names(run(world.models.search_models(alice, filter="name LIKE '%a'"))) == [
        "Beta",
        "alpha",
        "gamma",
    ]
    assert names(run(world.models.search_models(alice, filter="name ILIKE 'b%'"))) == ["Beta"]
    assert names(run(world.models.search_models(alice, filter="name = 'gamma'"))) == ["gamma"]
    assert names(run(world.models.search_models(alice, filter="tags.kind = 'a' AND name != 'x'"))) == [
        "alpha"
    ]
    assert names(run(world.models.search_models(alice, order_by=["name DESC"]))) == [
        "gamma",
        "delta-prompt",
        "alpha",
        "Beta",
    ]
    newest_first = names(run(world.models.search_models(root, order_by=["creation_timestamp DESC", "name"])))
    assert set(newest_first) == {"alpha", "Beta", "gamma", "delta-prompt", "nlp-only"}
    seen: list[str] = []
    token = None
    for _ in range(4):
        page = run(world.models.search_models(alice, max_results=3, page_token=token))
        seen += names(page)
        token = page.next_page_token
        if token is None:
            break
    assert seen == ["Beta", "alpha", "delta-prompt", "gamma"]
    for bad in ("name ~ 'x'", "metrics.x > 1", "name = 'a' OR name = 'b'", "nope = 'x'"):
        with pytest.raises(BadRequest) as refused:
            run(world.models.search_models(alice, filter=bad))
        assert refused.value.field == "filter", bad
    with pytest.raises(BadRequest) as refused:
        run(world.models.search_models(alice, page_token="not-a-token"))
    assert refused.value.field == "page_token"
    with pytest.raises(BadRequest) as refused:
        run(world.models.search_models(alice, max_results=0))
    assert refused.value.field == "max_results"
    with pytest.raises(BadRequest) as refused:
        run(world.models.search_models(alice, order_by=["tags.kind"]))
    assert refused.value.field == "order_by"

    for source_run in (run_a, run_b, run_a):
        run(world.models.create_version(alice, "alpha", source=f"runs:/{source_run}/model"))
    run(world.models.create_version(alice, "gamma", source=f"runs:/{run_b}/model"))
    run(world.models.update_version(alice, "alpha", 2, stage="Staging"))
    run(world.models.set_version_tag(alice, "alpha", 3, "approved", "yes"))
    versions = lambda page: [(v.model_name, v.version) for v in page.items]  # noqa: E731
    everything = run(world.models.search_versions(alice))
    assert versions(everything) == [("alpha", 3), ("alpha", 2), ("alpha", 1), ("gamma", 1)]
    assert versions(run(world.models.search_versions(alice, filter=f"run_id = '{run_b}'"))) == [
        ("alpha", 2),
        ("gamma", 1),
    ]
    assert versions(run(world.models.search_versions(alice, filter=f"run_id IN ('{run_a}', 'zzz')"))) == [
        ("alpha", 3),
        ("alpha", 1),
    ]
    assert versions(run(world.models.search_versions(alice, filter="current_stage = 'Staging'"))) == [
        ("alpha", 2)
    ]
    assert versions(
        run(world.models.search_versions(alice, filter="name = 'alpha' AND version_number > 1"))
    ) == [
        ("alpha", 3),
        ("alpha", 2),
    ]
    assert versions(run(world.models.search_versions(alice, filter="tags.approved = 'yes'"))) == [
        ("alpha", 3)
    ]
    assert versions(run(world.models.search_versions(alice, filter="tags.approved != 'yes'"))) == [
        ("alpha", 2),
        ("alpha", 1),
        ("gamma", 1),
    ]
    assert versions(
        run(world.models.search_versions(alice, filter="source_path LIKE 'runs:/%'"))
    ) == versions(everything)
    assert versions(run(world.models.search_versions(alice, order_by=["version_number ASC"])))[0][1] == 1
    first = run(world.models.search_versions(alice, max_results=3))
    rest = run(world.models.search_versions(alice, max_results=3, page_token=first.next_page_token))
    assert versions(first) + versions(rest) == versions(everything) and rest.next_page_token is None
    assert run(world.models.search_versions(world.caller("bob"))).items == []
    with pytest.raises(BadRequest) as refused:
        run(world.models.search_versions(alice, filter="current_stage = 'Shipping'"))
    assert refused.value.field == "filter"


def test_submarine_base_dir_versions(world: World) -> None:
    alice = world.caller("alice")
    files = {
        "export/description.json": b'{"id": "abc123", "model_type": "tensorflow"}',
        "export/saved_model.pb": b"graph",
        "export/variables/variables.index": b"idx",
        "broken/description.json": b"{not json",
        "plain/model.bin": b"x",
    }
    run_id = world.run_with("vision", files)
    root = world.artifacts_of(run_id)
    run(world.models.create_model(alice, "tf-model"))
    made = run(
        world.models.create_version_from_base_dir(
            alice,
            "tf-model",
            base_dir=f"{root}/export",
            tags=["fast", "small"],
            dataset="mnist",
            description="d",
        )
    )
    assert (made.version, made.model_type, made.submarine_id, made.dataset) == (
        1,
        "tensorflow",
        "abc123",
        "mnist",
    )
    assert made.tags == {"fast": "", "small": ""}
    assert made.lineage.run_id == run_id
    listing = run(world.models.list_files(alice, made.model_key, 1, ""))
    assert [(f.path, f.is_dir) for f in listing] == [
        ("description.json", False),
        ("saved_model.pb", False),
        ("variables", True),
    ]
    for base_dir, problem in ((f"{root}/plain", "no description.json"), (f"{root}/broken", "not JSON")):
        with pytest.raises(BadRequest, match=problem) as refused:
            run(world.models.create_version_from_base_dir(alice, "tf-model", base_dir=base_dir))
        assert refused.value.field == "baseDir"
    with pytest.raises(NotFound) as refused:
        run(
            world.models.create_version_from_base_dir(
                alice, "tf-model", base_dir=f"{root}/export", experiment_id="experiment-1-0001"
            )
        )
    assert refused.value.field is None and "experimentId" in refused.value.message
    with pytest.raises(NotFound):
        run(
            world.models.create_version_from_base_dir(
                world.caller("bob"), "tf-model", base_dir=f"{root}/export"
            )
        )


def test_a_submarine_experiment_path_names_its_newest_attempts_files(world: World) -> None:
    alice = world.caller("alice")
    description = b'{"id": "m1", "model_type": "pytorch"}'
    world.run_with(
        "vision", {"export/description.json": description, "export/old.pt": b"1"}, workload_id="exp-7"
    )
    newest = world.run_with("vision", {"export/description.json": description, "export/new.pt": b"2"})
    world.db.call(
        lambda s: s.execute(
            runs.RUN.update().where(runs.RUN.c.run_id == newest).values(workload_id="exp-7", attempt=2)
        )
    )
    run(world.models.create_model(alice, "torch"))
    made = run(world.models.create_version_from_base_dir(alice, "torch", base_dir="experiment/exp-7/export"))
    assert [f.path for f in run(world.models.list_files(alice, made.model_key, 1, ""))] == [
        "description.json",
        "new.pt",
    ]
    assert (made.lineage.run_id, made.lineage.workload_id, made.model_type) == (newest, "exp-7", "pytorch")
    with pytest.raises(NotFound) as refused:
        run(world.models.create_version(alice, "torch", source="experiment/exp-8/export"))
    assert refused.value.field == "source"
