"""The S3 artifact backend against moto's S3 server: the store contract, multipart uploads fed
from a stream (and aborted when the stream fails), prefixes, and errors that show no credential."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from broker.artifacts.s3 import PART_SIZE, S3Store
from broker.artifacts.store import ArtifactStoreUnavailable
from tests.artifact_contract import (
    chunks_of,
    failed_upload_leaves_nothing,
    large_file_round_trip,
    missing_and_folders_are_not_files,
    names,
    put_open_list_delete,
    read_all,
    run,
)
from tests.moto_s3 import CREDENTIALS, moto_server, s3_client


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def client(moto: str) -> Any:
    return s3_client(moto)


@pytest.fixture
def bucket(client: Any) -> str:
    name = f"artifacts-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(client: Any, bucket: str) -> S3Store:
    return S3Store(bucket, prefix="team/mlflow", client=client)


def test_put_open_list_delete(store: S3Store, client: Any, bucket: str) -> None:
    run(put_open_list_delete(store))
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["team/mlflow/1/run/artifacts/empty.txt"]  # everything under the prefix


def test_missing_files_and_folders_are_not_found(store: S3Store) -> None:
    run(missing_and_folders_are_not_files(store))


def test_a_failed_upload_is_aborted_and_leaves_nothing(store: S3Store, client: Any, bucket: str) -> None:
    run(failed_upload_leaves_nothing(store, 3 * PART_SIZE))
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_large_file_goes_up_in_parts_and_round_trips(store: S3Store, client: Any, bucket: str) -> None:
    run(large_file_round_trip(store, 20))  # 20 MB: two full 8 MB parts and a last one
    head = client.head_object(Bucket=bucket, Key="team/mlflow/4/run/large.bin")
    assert head["ContentLength"] == 20 * 1024 * 1024
    assert head["ETag"].strip('"').endswith("-3")  # a multipart object of three parts


def test_listing_pages_past_a_thousand_keys_and_deletes_them_all(
    store: S3Store, client: Any, bucket: str
) -> None:
    for i in range(1005):
        client.put_object(Bucket=bucket, Key=f"team/mlflow/5/run/many/f{i:04d}.txt", Body=b"x")
    listed = run(store.list("5/run/many"))
    assert len(listed) == 1005 and listed[0].path == "f0000.txt" and listed[0].file_size == 1
    run(store.delete("5/run"))
    assert client.list_objects_v2(Bucket=bucket, Prefix="team/mlflow/5/").get("KeyCount") == 0


def test_a_prefix_separates_stores_in_one_bucket(client: Any, bucket: str) -> None:
    first = S3Store(bucket, prefix="one", client=client)
    second = S3Store(bucket, prefix="two/", client=client)
    run(first.put("1/a.txt", chunks_of(b"first")))
    assert run(second.list("1")) == []
    assert run(read_all(first, "1/a.txt")) == (5, b"first")
    bare = S3Store(bucket, client=client)
    assert names(run(bare.list(""))) == [("one", True, None)]


def test_a_missing_bucket_is_unavailable_and_names_no_credential(client: Any) -> None:
    store = S3Store("no-such-bucket-here", client=client)
    with pytest.raises(ArtifactStoreUnavailable) as refused:
        run(store.put("1/a.txt", chunks_of(b"x")))
    assert "NoSuchBucket" in str(refused.value)
    for secret in (CREDENTIALS["AWS_SECRET_ACCESS_KEY"], CREDENTIALS["AWS_ACCESS_KEY_ID"]):
        assert secret not in str(refused.value)
