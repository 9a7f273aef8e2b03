"""Keyed Prefect artifacts published again only when what they show changed.

Each succeeded video has four keyed artifacts (flows/video_artifacts.py). Published on every run, they took
1.75 s of a 3.3 s run of a 30-video library that changed nothing, and each such run added 120 versions to the
server's history, all identical to the ones before. WORKSPACE/library/published.json records, per key, a digest
of what was published and the id the server gave that version. A run publishes an artifact when its digest
changed, or when the server's latest versions of the unchanged keys are not the recorded ones (another server,
a reset database, someone else publishing under the key): then it publishes them all again.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, NamedTuple, Sequence

from tasks.core.formats import read_json, write_json

PUBLISHED_JSON = "published.json"  # in WORKSPACE/library/


@dataclass(frozen=True)
class KeyedArtifact:
    """One artifact as Prefect stores it: `data` is the Markdown, the image's URL or the link's URL."""
    kind: Literal["markdown", "image", "link"]
    key: str
    data: str
    description: str
    link_text: str | None = None

    def digest(self) -> str:
        return hashlib.blake2b(json.dumps(asdict(self), sort_keys=True).encode(), digest_size=16).hexdigest()

    def publish(self):
        """The id of the version created."""
        from prefect import artifacts

        if self.kind == "link":
            return artifacts.create_link_artifact(self.data, link_text=self.link_text, key=self.key,
                                                  description=self.description)
        create = artifacts.create_markdown_artifact if self.kind == "markdown" else artifacts.create_image_artifact
        return create(self.data, key=self.key, description=self.description)


def latest_count(ids: Sequence[str]) -> int | None:
    """How many of these artifact ids are the latest version of their key on the server; None when it cannot say."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            response = client.request("POST", "/artifacts/latest/count",
                                      json={"artifacts": {"latest_id": {"any_": list(ids)}}})
            response.raise_for_status()
            return int(response.json())
    except Exception:  # noqa: BLE001  (any answer but a count means: publish again)
        return None


def _ledger(path: Path) -> dict[str, dict]:
    try:
        known = read_json(path)
    except (OSError, ValueError):  # none yet, or unreadable: publish everything once
        return {}
    return known if isinstance(known, dict) else {}


class Published(NamedTuple):
    count: int  # versions this call published
    ids: dict[str, str]  # key -> id of the version current after this call, published now or earlier


def publish_changed(artifacts: Sequence[KeyedArtifact], ledger: Path) -> Published:
    """Publish the artifacts not already on the server as they are. The ledger keeps the keys given here only, so
    a video gone from the library drops out of it."""
    known = _ledger(ledger)
    unchanged = [a for a in artifacts if known.get(a.key, {}).get("digest") == a.digest()]
    if unchanged and latest_count([known[a.key]["id"] for a in unchanged]) != len(unchanged):
        unchanged = []
    kept = {a.key for a in unchanged}
    entries = {a.key: known[a.key] for a in unchanged}
    try:
        for a in artifacts:
            if a.key not in kept:
                entries[a.key] = {"digest": a.digest(), "id": str(a.publish())}
    finally:  # what was published before a failure is not published again
        write_json(ledger, entries)
    return Published(len(artifacts) - len(unchanged), {key: entry["id"] for key, entry in entries.items()})
