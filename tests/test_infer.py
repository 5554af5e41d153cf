"""``tools/infer.py``: many videos, a queries file (Ref-YouTube-VOS's ``meta_expressions.json`` or
a CSV), the Ref-YouTube-VOS output layout, reruns that skip finished videos, failures reported
with the others kept, and several processes giving the bytes of one."""

import hashlib
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from aamn.engine.batch_inference import read_queries_file

from fixtures import load_script
from modeling_helpers import vocab_file  # noqa: F401
from test_predictor import REPO, _square_frames, _write_mp4, checkpoints  # noqa: F401


@pytest.fixture
def videos(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    _write_mp4(root / "clipA.mp4", _square_frames(5))
    folder = root / "clipB"
    folder.mkdir()
    for i, f in enumerate(_square_frames(4)):
        cv2.imwrite(str(folder / f"{10 * i:05d}.jpg"), f[..., ::-1])
    (root / "broken.mp4").write_bytes(b"not a video")
    queries = {
        "videos": {
            "clipA": {"expressions": {"0": {"exp": "a man is running"}, "1": {"exp": "red dog"}}},
            "clipB": {"expressions": {"0": {"exp": "a man walking"}}},
            "broken": {"expressions": {"0": {"exp": "a man"}}},
        }
    }
    (tmp_path / "meta_expressions.json").write_text(json.dumps(queries))
    return root, tmp_path / "meta_expressions.json"


def _infer(argv):
    return load_script("tools/infer.py").main(argv)


def _tree(root):
    out = {}
    for folder, _, files in os.walk(root):
        for f in files:
            path = os.path.join(folder, f)
            out[os.path.relpath(path, root)] = hashlib.sha1(open(path, "rb").read()).hexdigest()
    return out


def test_many_videos_in_the_ref_youtube_vos_layout(checkpoints, videos, tmp_path, capsys):
    root, queries = videos
    cfg_path, weights = checkpoints["CMDy"]
    out = tmp_path / "out"
    argv = ["--config-file", cfg_path, "--input", str(root / "*"), "--queries", str(queries)]
    argv += ["--output", str(out), "--quiet", "MODEL.WEIGHTS", weights]
    assert _infer(argv) == 1  # broken.mp4 failed
    err = capsys.readouterr().err
    assert "1 video(s) failed" in err and "broken" in err
    a = sorted(os.listdir(out / "Annotations" / "clipA" / "0"))
    assert a == [f"{i:05d}.png" for i in range(5)]
    b = sorted(os.listdir(out / "Annotations" / "clipB" / "0"))
    assert b == ["00000.png", "00010.png", "00020.png", "00030.png"]  # the frames' own names
    png = cv2.imread(str(out / "Annotations" / "clipA" / "1" / "00000.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint8 and png.shape == (48, 64) and set(np.unique(png)) <= {0, 255}
    info = json.loads((out / "clipA.json").read_text())
    assert set(info["expressions"]) == {"0", "1"}
    assert len(info["expressions"]["1"]["frames"]) == 5
    assert info["expressions"]["1"]["frames"][0]["segmentation"]["size"] == [48, 64]
    assert not (out / "broken.json").exists() and not (out / "Annotations" / "broken").exists()
    assert json.loads((out / "failed.json").read_text())[0]["video"] == "broken"
    # a rerun skips the finished videos (their files untouched)
    before = {p: os.stat(out / p).st_mtime_ns for p in _tree(out) if p != "failed.json"}
    os.remove(root / "broken.mp4")
    argv[argv.index(str(root / "*"))] = str(root / "clip*")
    assert _infer(argv) == 0 and not (out / "failed.json").exists()
    assert {p: os.stat(out / p).st_mtime_ns for p in before} == before


def test_several_processes_write_the_bytes_of_one(checkpoints, videos, tmp_path):
    root, queries = videos
    os.remove(root / "broken.mp4")
    cfg_path, weights = checkpoints["CMDy"]
    trees = []
    for n in (1, 2):
        out = tmp_path / f"out{n}"
        cmd = [sys.executable, os.path.join(REPO, "tools", "infer.py"), "--config-file", cfg_path]
        cmd += ["--input", str(root / "*"), "--queries", str(queries), "--output", str(out)]
        cmd += ["--num-gpus", str(n), "--quiet", "MODEL.WEIGHTS", weights]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        trees.append(_tree(out))
    assert trees[0] == trees[1] and len(trees[0]) == 5 + 5 + 4 + 2


def test_queries_files_of_both_forms_and_their_errors(tmp_path):
    csv_file = tmp_path / "q.csv"
    csv_file.write_text('video,exp_id,exp\nclipA,0,a man is running\nclipA,1,"red, dog"\n')
    assert read_queries_file(str(csv_file)) == {"clipA": {"0": "a man is running", "1": "red, dog"}}
    bad = tmp_path / "bad.csv"
    bad.write_text("video,exp_id,exp\n../x,0,a man\n")
    with pytest.raises(ValueError, match=r"bad\.csv: the video id '\.\./x' is not a plain name"):
        read_queries_file(str(bad))
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"clipA": {"0": "a man"}}')
    with pytest.raises(ValueError, match=r"wrong\.json: expected"):
        read_queries_file(str(wrong))
    twice = tmp_path / "twice.csv"
    twice.write_text("video,exp_id,exp\nv,0,a\nv,0,b\n")
    with pytest.raises(ValueError, match="listed twice"):
        read_queries_file(str(twice))
