"""The library speaker table: one row per voice, with its speech time, files, linked face, names and centroid."""
import numpy as np
import pyarrow.parquet as pq

from tasks.library.gallery import GalleryMatch
from tasks.core.records import SpeakerLink
from tasks.library.registry import Member, Registry, registry_paths, save_registry
from tasks.library.speaker_table import TABLE_CSV, TABLE_PARQUET, SpeakerRow, speaker_rows, write_speaker_table
from tasks.library.subtitles import SubtitleNaming
from tasks.core.workspace import Workspace
from tasks.library.view import LibraryNames, LibraryView


def _voice(video, local, gid, seconds, direction):
    v = np.zeros(4, np.float32)
    v[direction] = 1.0
    return Member(video, "key", local, gid, seconds, v)


REGISTRY = Registry("speaker", "cosine", [
    _voice("ep1.mp4", "SPEAKER_00", "speaker_000", 12.5, 0),
    _voice("ep2.mp4", "SPEAKER_01", "speaker_000", 7.5, 0),
    _voice("ep1.mp4", "SPEAKER_01", "speaker_001", 3.0, 1),
    _voice("ep2.mp4", "SPEAKER_00", "speaker_002", 1.0, 2),
])
NAMES = LibraryNames(
    gallery={"character_004": GalleryMatch("character_004", "Ada", 0.3)},
    subtitles=SubtitleNaming(["ep1.srt"], {"speaker_001": "BOB"}, {"character_004": "Ada", "character_007": "BOB"}, []),
    links={"speaker_000": SpeakerLink("speaker_000", "character_004", 0.8, 20.0, 16.0),
           "speaker_001": SpeakerLink("speaker_001", "character_007", 0.6, 3.0, 1.8),
           "speaker_002": SpeakerLink("speaker_002", None, 0.0, 1.0, 0.0)})
VIEW = LibraryView(Registry("character", "euclidean", []), REGISTRY, NAMES)


def test_rows_sum_each_voice_over_its_files_with_its_face_and_names():
    assert speaker_rows(VIEW) == [
        SpeakerRow("speaker_000", None, "character_004", "Ada", 20.0, ("ep1.mp4", "ep2.mp4")),
        SpeakerRow("speaker_001", "BOB", "character_007", "BOB", 3.0, ("ep1.mp4",)),
        SpeakerRow("speaker_002", None, None, None, 1.0, ("ep2.mp4",)),  # off-screen, unnamed
    ]


def test_table_files_hold_the_rows_and_the_centroids(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    save_registry(registry_paths(ws)[1], REGISTRY)
    assert write_speaker_table(ws, VIEW) == 3
    table = pq.read_table(ws.library_dir / TABLE_PARQUET)
    assert table.column("speaker").to_pylist() == ["speaker_000", "speaker_001", "speaker_002"]
    assert table.column("files").to_pylist()[0] == ["ep1.mp4", "ep2.mp4"]
    assert table.column("n_files").to_pylist() == [2, 1, 1]
    centroids = np.array(table.column("centroid").to_pylist(), np.float32)
    assert centroids.shape == (3, 4) and np.allclose(centroids, np.eye(3, 4))
    assert table.schema.metadata[b"space"] == b"ge2e"
    csv = (ws.library_dir / TABLE_CSV).read_text().splitlines()
    assert csv[0] == "speaker,name,character,character_name,speech_seconds,n_files,files"
    assert csv[1] == "speaker_000,,character_004,Ada,20.0,2,ep1.mp4;ep2.mp4"
    assert csv[3] == "speaker_002,,,,1.0,1,ep2.mp4"


def test_a_library_without_voices_writes_an_empty_table(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    assert write_speaker_table(ws, LibraryView.load(ws)) == 0
    assert pq.read_table(ws.library_dir / TABLE_PARQUET).num_rows == 0
