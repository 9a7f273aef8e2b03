import shutil

from tasks.core.formats import TEMP_SUFFIX
from tasks.core.workspace import Workspace, remove_partials


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


def test_a_parameter_rekeys_its_stage_and_what_follows_only(tmp_path, sample_dir):
    from tasks.core.config import RunConfig
    from tasks.video.pipeline import STAGES, StageKeys

    ws = Workspace.open(tmp_path)
    vid = ws.video_id(sample_dir / "hamilton.mp4")
    base = StageKeys(vid, RunConfig())
    assert base["detect"] == StageKeys(vid, RunConfig())["detect"]
    assert STAGES["detect"].result(ws, base["detect"]).parent.name == vid[:16]

    def changed(cfg):
        keys = StageKeys(vid, cfg)
        return {name for name in STAGES if keys[name] != base[name]}

    assert changed(RunConfig(demux={"fps": 2})) == {"frames", "detect", "track", "embed", "cluster", "align"}
    assert changed(RunConfig(detect={"min_score": 0.8})) == {"detect", "track", "embed", "cluster", "align"}
    assert changed(RunConfig(diarize={"threshold": 0.5})) == {"diarize", "align"}
    assert changed(RunConfig(detect={"threads": 1})) == set()


def test_remove_partials(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / f".x.json.123{TEMP_SUFFIX}").write_text("half")
    (tmp_path / f".store.abc{TEMP_SUFFIX}").mkdir()
    (tmp_path / "a" / "done.json").write_text("{}")
    assert remove_partials(tmp_path) == 2
    assert [p.name for p in tmp_path.rglob("*")] == ["a", "done.json"]


def test_partials_are_only_removed_by_a_run_that_is_alone(tmp_path):
    from tasks.core.workspace import active_run
    with active_run(tmp_path) as first:
        with active_run(tmp_path) as second:
            assert first and not second
    with active_run(tmp_path) as again:
        assert again
