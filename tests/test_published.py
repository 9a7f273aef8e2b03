"""Per-video artifacts are published again only when they changed, checked against a real Prefect API (the test
session's ephemeral server): the ledger's ids must still be the server's latest versions."""
import uuid

import pytest

# The production caller runs inside a flow; outside one Prefect warns that artifact creation is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:Artifact creation outside:FutureWarning")

from conftest import latest_artifact_data
from flows.published import KeyedArtifact, latest_count, publish_changed
from tasks.core.formats import read_json, write_json


def keyed(tag: str, text: str = "hello") -> list[KeyedArtifact]:
    return [KeyedArtifact("markdown", f"castline-test-{tag}-found", f"## {text}", "what was found"),
            KeyedArtifact("image", f"castline-test-{tag}-timeline", "data:image/png;base64,iVBORw0KGgo=", "timeline"),
            KeyedArtifact("link", f"castline-test-{tag}-report", "file:///tmp/report.html", "report",
                          link_text="report.html")]


def test_an_unchanged_artifact_is_not_published_again_and_a_changed_one_is(tmp_path):
    tag, ledger = uuid.uuid4().hex[:12], tmp_path / "published.json"
    assert publish_changed(keyed(tag), ledger).count == 3
    assert publish_changed(keyed(tag), ledger).count == 0
    ids = [read_json(ledger)[a.key]["id"] for a in keyed(tag)]
    assert publish_changed(keyed(tag), ledger).ids == {a.key: i for a, i in zip(keyed(tag), ids)}
    assert latest_count(ids) == 3
    assert publish_changed(keyed(tag, "changed"), ledger).count == 1
    assert latest_artifact_data(f"castline-test-{tag}-found") == "## changed"
    assert latest_count(ids) == 2  # the found table's recorded version is no longer the latest


def test_everything_is_published_again_when_the_server_does_not_hold_the_recorded_versions(tmp_path):
    """As after switching to another server or resetting its database: ids the server never gave out."""
    tag, ledger = uuid.uuid4().hex[:12], tmp_path / "published.json"
    write_json(ledger, {a.key: {"digest": a.digest(), "id": str(uuid.uuid4())} for a in keyed(tag)})
    assert publish_changed(keyed(tag), ledger).count == 3
    assert latest_artifact_data(f"castline-test-{tag}-found") == "## hello"


def test_a_version_published_by_someone_else_under_the_key_is_replaced(tmp_path):
    tag, ledger = uuid.uuid4().hex[:12], tmp_path / "published.json"
    publish_changed(keyed(tag), ledger)
    KeyedArtifact("markdown", f"castline-test-{tag}-found", "## another run's", "what was found").publish()
    assert publish_changed(keyed(tag), ledger).count == 3
    assert latest_artifact_data(f"castline-test-{tag}-found") == "## hello"


def test_a_failure_midway_keeps_what_was_published_and_keys_gone_drop_out(tmp_path, monkeypatch):
    tag, ledger = uuid.uuid4().hex[:12], tmp_path / "published.json"
    publish = KeyedArtifact.publish

    def fail_on_links(self):
        if self.kind == "link":
            raise RuntimeError("API went away")
        return publish(self)

    monkeypatch.setattr(KeyedArtifact, "publish", fail_on_links)
    with pytest.raises(RuntimeError):
        publish_changed(keyed(tag), ledger)
    assert set(read_json(ledger)) == {f"castline-test-{tag}-found", f"castline-test-{tag}-timeline"}
    monkeypatch.setattr(KeyedArtifact, "publish", publish)
    assert publish_changed(keyed(tag), ledger).count == 1  # only the link
    assert publish_changed(keyed(tag)[:1], ledger).count == 0
    assert set(read_json(ledger)) == {f"castline-test-{tag}-found"}


def test_an_unreadable_ledger_means_publish_everything(tmp_path):
    tag, ledger = uuid.uuid4().hex[:12], tmp_path / "published.json"
    ledger.write_text("{not json")
    assert publish_changed(keyed(tag), ledger).count == 3
    assert publish_changed(keyed(tag), ledger).count == 0
