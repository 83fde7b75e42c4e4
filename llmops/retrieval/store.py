"""Index versions in Qdrant (qdrant-client: a server by URL in production, embedded by path in tests):
one collection per version, `<index>--v<N>`, with its retrieval config, fingerprint and corpus snapshot
in the collection's metadata, and the alias `<index>` that serving queries -- moved atomically.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

CHUNK_NAMESPACE = uuid.UUID("6f1c7e52-2b8a-4c5e-9a39-0b6d8d1f3a10")


def version_name(index: str, number: int) -> str:
    return f"{index}--v{number}"


def version_number(index: str, collection: str) -> int | None:
    match = re.fullmatch(re.escape(index) + r"--v(\d+)", collection)
    return int(match.group(1)) if match else None


def chunk_id(doc_id: str, number: int) -> str:
    """The same chunk of the same document always gets the same point id: a repeated upsert is a no-op."""
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{doc_id}#{number}"))


class IndexStore:
    def __init__(self, *, url: str | None = None, path: str | None = None, api_key: str | None = None) -> None:
        from qdrant_client import QdrantClient

        self.client = QdrantClient(url=url, api_key=api_key, timeout=60) if url else QdrantClient(path=path)

    def close(self) -> None:
        self.client.close()

    # --- versions and the alias ------------------------------------------------------------------------------

    def versions(self, index: str) -> dict[int, str]:
        found = {}
        for collection in self.client.get_collections().collections:
            number = version_number(index, collection.name)
            if number is not None:
                found[number] = collection.name
        return dict(sorted(found.items()))

    def live(self, index: str) -> str | None:
        """The collection the alias points at."""
        for alias in self.client.get_aliases().aliases:
            if alias.alias_name == index:
                return str(alias.collection_name)
        return None

    def metadata(self, collection: str) -> dict[str, Any]:
        return dict(self.client.get_collection(collection).config.metadata or {})

    def create(self, collection: str, dimension: int, metadata: Mapping[str, Any]) -> None:
        from qdrant_client import models

        self.client.create_collection(collection, vectors_config=models.VectorParams(
            size=dimension, distance=models.Distance.COSINE), metadata=dict(metadata))

    def update_metadata(self, collection: str, metadata: Mapping[str, Any]) -> None:
        self.client.update_collection(collection, metadata=dict(metadata))

    def flip(self, index: str, collection: str) -> None:
        """Point the alias at `collection` in one operation (delete and create together)."""
        from qdrant_client import models

        operations: list[Any] = []
        if self.live(index) is not None:
            operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=index)))
        operations.append(models.CreateAliasOperation(create_alias=models.CreateAlias(
            collection_name=collection, alias_name=index)))
        self.client.update_collection_aliases(change_aliases_operations=operations)

    def delete(self, collection: str) -> None:
        self.client.delete_collection(collection)

    # --- points ------------------------------------------------------------------------------------------------

    def upsert(self, collection: str, points: Iterable[tuple[str, list[float], dict[str, Any]]]) -> int:
        from qdrant_client import models

        batch = [models.PointStruct(id=pid, vector=vector, payload=payload) for pid, vector, payload in points]
        if batch:
            self.client.upsert(collection, points=batch, wait=True)
        return len(batch)

    def search(self, collection: str, vector: list[float], limit: int) -> list[str]:
        """Document ids of the best chunks, best first, each document once."""
        found = self.client.query_points(collection, query=vector, limit=limit * 4, with_payload=["doc_id"]).points
        seen: list[str] = []
        for point in found:
            doc = (point.payload or {}).get("doc_id")
            if doc and doc not in seen:
                seen.append(doc)
        return seen[:limit]

    def documents(self, collection: str) -> Iterator[tuple[str, str | None]]:
        """(document id, ETag) of every indexed document (its first chunk's payload)."""
        from qdrant_client import models

        offset = None
        first_chunks = models.Filter(must=[models.FieldCondition(key="chunk", match=models.MatchValue(value=0))])
        while True:
            points, offset = self.client.scroll(collection, scroll_filter=first_chunks, limit=1000, offset=offset,
                                                with_payload=["doc_id", "etag"], with_vectors=False)
            for point in points:
                yield (point.payload or {})["doc_id"], (point.payload or {}).get("etag")
            if offset is None:
                return

    def count(self, collection: str) -> int:
        return int(self.client.count(collection, exact=True).count)
