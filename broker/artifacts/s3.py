"""The S3-compatible artifact backend (AWS S3, MinIO, Ceph RGW...), through boto3.

Credentials come only from boto3's own chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, an instance role...), never from broker.yaml, and no message here repeats one.
boto3 is synchronous: every call runs in a worker thread. An upload is a multipart upload fed
from the request as it arrives (8 MB parts, aborted when the request fails), so its memory is a
part or two whatever the file's size; a download streams the object's body.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from broker.artifacts.store import (
    CHUNK_SIZE,
    ArtifactBlob,
    ArtifactNotFound,
    ArtifactStoreUnavailable,
    FileInfo,
)

log = logging.getLogger(__name__)

#: Bytes per part of a multipart upload (S3 wants at least 5 MB for all parts but the last).
PART_SIZE = 8 * 1024 * 1024
#: Keys per DeleteObjects call (S3's maximum).
DELETE_BATCH = 1000
_MISSING = {"NoSuchKey", "404", "NotFound"}
T = TypeVar("T")


class S3Store:
    """:class:`~broker.artifacts.store.ArtifactStore` on a bucket, under an optional key prefix."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        if client is None:
            import boto3  # optional (submarine-broker[s3]); checked when the config is read
            from botocore.config import Config

            session = boto3.session.Session()
            client = session.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                config=Config(retries={"max_attempts": 3, "mode": "standard"}),
            )
        self.client = client

    def _key(self, path: str) -> str:
        return self.prefix + path

    async def _call(self, what: str, path: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a thread; a missing object as :class:`ArtifactNotFound`,
        any other failure as :class:`ArtifactStoreUnavailable` naming the S3 error code only."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise ArtifactNotFound(f"no artifact at '{path}'") from None
            log.warning("S3 %s of %s in bucket %s failed: %s", what, path, self.bucket, code)
            raise ArtifactStoreUnavailable(
                f"the artifact store refused {what} of '{path}' ({code})"
            ) from None
        except BotoCoreError as exc:
            log.warning("S3 %s of %s in bucket %s failed: %s", what, path, self.bucket, type(exc).__name__)
            raise ArtifactStoreUnavailable(
                f"the artifact store did not answer {what} of '{path}' ({type(exc).__name__})"
            ) from None

    # writing ----------------------------------------------------------------------------------
    async def put(self, path: str, chunks: AsyncIterator[bytes]) -> int:
        key = self._key(path)
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        done = False
        try:
            async for chunk in chunks:
                buffer += chunk
                size += len(chunk)
                while len(buffer) >= PART_SIZE:
                    if upload_id is None:
                        created = await self._call(
                            "upload", path, self.client.create_multipart_upload, Bucket=self.bucket, Key=key
                        )
                        upload_id = str(created["UploadId"])
                    part = bytes(memoryview(buffer)[:PART_SIZE])
                    del buffer[:PART_SIZE]
                    parts.append(await self._part(path, key, upload_id, len(parts) + 1, part))
            if upload_id is None:
                await self._call(
                    "upload", path, self.client.put_object, Bucket=self.bucket, Key=key, Body=bytes(buffer)
                )
            else:
                if buffer:
                    parts.append(await self._part(path, key, upload_id, len(parts) + 1, bytes(buffer)))
                await self._call(
                    "upload",
                    path,
                    self.client.complete_multipart_upload,
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
            done = True
        finally:
            if upload_id is not None and not done:
                with anyio.CancelScope(shield=True):
                    await self._abort(path, key, upload_id)
        return size

    async def _part(self, path: str, key: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        answer = await self._call(
            "upload",
            path,
            self.client.upload_part,
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    async def _abort(self, path: str, key: str, upload_id: str) -> None:
        try:
            await self._call(
                "abort",
                path,
                self.client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
            )
        except Exception:  # noqa: BLE001 - the upload's own error is the one to report
            log.warning(
                "could not abort the multipart upload of %s; the bucket's lifecycle rule removes it", path
            )

    # reading ----------------------------------------------------------------------------------
    async def open(self, path: str) -> ArtifactBlob:
        answer = await self._call(
            "download", path, self.client.get_object, Bucket=self.bucket, Key=self._key(path)
        )
        body = answer["Body"]
        size = answer.get("ContentLength")
        return ArtifactBlob(int(size) if size is not None else None, self._stream(path, body))

    async def _stream(self, path: str, body: Any) -> AsyncIterator[bytes]:
        chunks: Iterator[bytes] = body.iter_chunks(CHUNK_SIZE)
        try:
            while True:
                chunk = await self._call("download", path, next, chunks, b"")
                if not chunk:
                    return
                yield chunk
        finally:
            await anyio.to_thread.run_sync(body.close)

    def _pages(self, **kwargs: Any) -> list[dict[str, Any]]:
        return list(self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, **kwargs))

    async def list(self, path: str) -> list[FileInfo]:
        prefix = self._key(path + "/" if path else "")
        pages = await self._call("listing", path, self._pages, Prefix=prefix, Delimiter="/")
        found: dict[str, FileInfo] = {}
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                name = str(common["Prefix"])[len(prefix) :].rstrip("/")
                if name:
                    found[name] = FileInfo(name, True)
            for item in page.get("Contents", []):
                name = str(item["Key"])[len(prefix) :]
                if name and name not in found:
                    found[name] = FileInfo(name, False, int(item.get("Size", 0)))
        return sorted(found.values(), key=lambda f: f.path)

    # removing ---------------------------------------------------------------------------------
    async def delete(self, path: str) -> None:
        key = self._key(path)
        pages = await self._call("listing", path, self._pages, Prefix=key + "/")
        keys = [key] + [str(item["Key"]) for page in pages for item in page.get("Contents", [])]
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": k} for k in keys[start : start + DELETE_BATCH]]
            await self._call(
                "deletion",
                path,
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": batch, "Quiet": True},
            )

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.client.close)
