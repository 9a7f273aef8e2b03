import shutil

from tasks.formats import TEMP_SUFFIX
from tasks.workspace import Workspace, remove_partials


def test_video_id_follows_content_not_path(tmp_path, sample_dir):
    ws = Workspace.open(tmp_path / "ws")
    a = tmp_path / "a.mp4"
    b = tmp_path / "sub" / "b.mp4"
    b.parent.mkdir()
    shutil.copy(sample_dir / "hamilton.mp4", a)
    shutil.copy(sample_dir / "hamilton.mp4", b)
    assert ws.video_id(a) == ws.video_id(b)
    a.write_bytes(a.read_bytes()[:-1] + b"\0")
    assert ws.video_id(a) != ws.video_id(b)


def test_keys_change_with_params_and_chain(tmp_path, sample_dir):
    ws = Workspace.open(tmp_path)
    video = sample_dir / "hamilton.mp4"
    k1 = ws.root_key(video, "probe", "tasks.demux", {})
    assert k1 == ws.root_key(video, "probe", "tasks.demux", {})
    f1 = k1.chain("frames", "tasks.demux", {"fps": 1})
    f2 = k1.chain("frames", "tasks.demux", {"fps": 2})
    assert f1.key != f2.key
    assert f1.chain("detect", "tasks.demux", {}).key != f2.chain("detect", "tasks.demux", {}).key
    assert ws.stage_path(f1, ".json").parent.name == k1.video_id[:16]


def test_remove_partials(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / f".x.json.123{TEMP_SUFFIX}").write_text("half")
    (tmp_path / f".store.abc{TEMP_SUFFIX}").mkdir()
    (tmp_path / "a" / "done.json").write_text("{}")
    assert remove_partials(tmp_path) == 2
    assert [p.name for p in tmp_path.rglob("*")] == ["a", "done.json"]


def test_partials_are_only_removed_by_a_run_that_is_alone(tmp_path):
    from tasks.workspace import active_run
    with active_run(tmp_path) as first:
        with active_run(tmp_path) as second:
            assert first and not second
    with active_run(tmp_path) as again:
        assert again
