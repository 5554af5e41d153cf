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

from aamn.config import get_aamn_cfg
from aamn.apps.batch_inference import STATE_DIR, read_queries_file, shard_jobs

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


def _tree(root, state=True):
    """``{relative path: SHA-1}`` of every file under ``root`` (``state``: the run's own
    ``.aamn-infer/`` too)."""
    out = {}
    for folder, _, files in os.walk(root):
        for f in files:
            path = os.path.join(folder, f)
            rel = os.path.relpath(path, root)
            if state or not rel.startswith(STATE_DIR):
                out[rel] = hashlib.sha1(open(path, "rb").read()).hexdigest()
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
    failed = out / STATE_DIR / "failed.json"
    assert json.loads(failed.read_text())[0]["video"] == "broken"
    # a rerun skips the finished videos (their files untouched)
    before = {p: os.stat(out / p).st_mtime_ns for p in _tree(out) if "failed" not in p}
    os.remove(root / "broken.mp4")
    argv[argv.index(str(root / "*"))] = str(root / "clip*")
    assert _infer(argv) == 0 and not failed.exists()
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
    # 14 masks, 2 JSON, and the marks that say the two mask folders are the tool's
    assert trees[0] == trees[1] and len(trees[0]) == 5 + 5 + 4 + 2 + 2


def test_two_machines_on_this_host_write_the_bytes_of_one_run(checkpoints, videos, tmp_path):
    """``--num-machines 2`` simulated by two commands meeting at tcp://127.0.0.1, and the two
    shards of a job array: each gives the outputs of one process."""
    import socket

    root, queries = videos
    os.remove(root / "broken.mp4")
    cfg_path, weights = checkpoints["CMDy"]
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def command(out, *extra):
        cmd = [sys.executable, os.path.join(REPO, "tools", "infer.py"), "--config-file", cfg_path]
        cmd += ["--input", str(root / "*"), "--queries", str(queries), "--output", str(out)]
        return cmd + ["--quiet", *extra, "MODEL.WEIGHTS", weights]

    def finish(procs):
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, out[-2000:] + err[-2000:]

    finish(
        [
            subprocess.Popen(
                command(tmp_path / "one"),
                cwd=REPO,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        ]
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    machines = [
        command(
            tmp_path / "machines",
            "--num-machines",
            "2",
            "--machine-rank",
            str(r),
            "--dist-url",
            f"tcp://127.0.0.1:{port}",
        )
        for r in (0, 1)
    ]
    finish(
        [
            subprocess.Popen(
                c, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            for c in machines
        ]
    )
    shards = [command(tmp_path / "shards", "--shard", f"{i}/2") for i in (0, 1)]
    finish(
        [
            subprocess.Popen(
                c, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            for c in shards
        ]
    )
    one = _tree(tmp_path / "one", state=False)
    assert len(one) == 5 + 5 + 4 + 2
    assert _tree(tmp_path / "machines", state=False) == one
    assert _tree(tmp_path / "shards", state=False) == one


def test_queries_files_of_both_forms_and_their_errors(tmp_path):
    csv_file = tmp_path / "q.csv"
    csv_file.write_text('video,exp_id,exp\nclipA,0,a man is running\nclipA,1,"red, dog"\n')
    assert read_queries_file(str(csv_file)) == {"clipA": {"0": "a man is running", "1": "red, dog"}}
    bad = tmp_path / "bad.csv"
    bad.write_text("video,exp_id,exp\n../x,0,a man\n")
    with pytest.raises(
        ValueError, match=r"bad\.csv, line 2: the video id '\.\./x' is not a plain name"
    ):
        read_queries_file(str(bad))
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"clipA": {"0": "a man"}}')
    with pytest.raises(ValueError, match=r"wrong\.json: expected"):
        read_queries_file(str(wrong))
    twice = tmp_path / "twice.csv"
    twice.write_text("video,exp_id,exp\nv,0,a\nv,0,b\n")
    with pytest.raises(ValueError, match="listed twice"):
        read_queries_file(str(twice))


def test_queries_files_as_spreadsheets_and_editors_write_them(tmp_path):
    bom = tmp_path / "excel.csv"  # Excel's "CSV UTF-8" starts with a byte-order mark
    bom.write_bytes("video,exp_id,exp\nclipA,0,a man\n".encode("utf-8-sig"))
    assert read_queries_file(str(bom)) == {"clipA": {"0": "a man"}}
    short = tmp_path / "short.csv"
    short.write_text("video,exp_id,exp\nclipA,0,a man\nclipA,1\n")
    with pytest.raises(ValueError, match=r"short\.csv, line 3: the row has no exp"):
        read_queries_file(str(short))
    empty = tmp_path / "empty.csv"
    empty.write_text("video,exp_id,exp\nclipA,0,a man\nclipA,1,   \n")
    with pytest.raises(ValueError, match=r"empty\.csv, line 3: expression clipA/1 is empty"):
        read_queries_file(str(empty))
    for body in (
        '{"videos": {"v": {"expressions": {"0": {"exp": "a"}, "0": {"exp": "b"}}}}}',
        '{"videos": {"v": {"expressions": {"0": {"exp": "a"}}}, "v": {"expressions": {}}}}',
    ):
        twice = tmp_path / "twice.json"
        twice.write_text(body)
        with pytest.raises(ValueError, match=r"twice\.json: the key '(0|v)' is listed twice"):
            read_queries_file(str(twice))
    blank = tmp_path / "blank.json"
    blank.write_text('{"videos": {"v": {"expressions": {"3": {"exp": ""}}}}}')
    with pytest.raises(ValueError, match=r"blank\.json: expression v/3 is empty"):
        read_queries_file(str(blank))


def test_each_video_goes_to_one_process_of_one_shard():
    jobs = [f"v{i}" for i in range(11)]
    seen = []
    for shard in ((0, 3), (1, 3), (2, 3)):
        for rank in range(2):
            seen += shard_jobs(jobs, shard, rank, 2)
    assert sorted(seen) == sorted(jobs)  # each exactly once
    assert shard_jobs(jobs, (1, 3), 0, 1) == ["v1", "v4", "v7", "v10"]
    assert shard_jobs(jobs, (0, 1), 1, 2) == jobs[1::2]


def _argv(cfg_path, weights, inputs, queries, out, *extra):
    return [
        "--config-file",
        cfg_path,
        "--input",
        *inputs,
        "--queries",
        str(queries),
        "--output",
        str(out),
        "--quiet",
        *extra,
        "MODEL.WEIGHTS",
        weights,
    ]


def test_a_folder_it_did_not_write_is_never_replaced(checkpoints, videos, tmp_path, capsys):
    """The split folder of Ref-YouTube-VOS as --output: its ground truth stays."""
    root, queries = videos
    os.remove(root / "broken.mp4")
    cfg_path, weights = checkpoints["CMDy"]
    out = tmp_path / "valid"
    truth = out / "Annotations" / "clipA" / "0"
    truth.mkdir(parents=True)
    (truth / "00000.png").write_bytes(b"ground truth")
    argv = _argv(cfg_path, weights, [str(root / "clipA.mp4"), str(root / "clipB")], queries, out)
    with pytest.raises(SystemExit) as e:
        _infer(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "did not write" in err and os.path.join("Annotations", "clipA") in err
    assert (truth / "00000.png").read_bytes() == b"ground truth"
    assert not (out / "clipB.json").exists()  # refused before anything was written
    # a training folder is never an output either
    train = tmp_path / "train"
    train.mkdir()
    (train / "last_checkpoint").write_text("model_final.pth")
    with pytest.raises(SystemExit):
        _infer(_argv(cfg_path, weights, [str(root / "clipB")], queries, train))
    assert "training folder" in capsys.readouterr().err and os.listdir(train) == ["last_checkpoint"]
    # a file as --output
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit):
        _infer(_argv(cfg_path, weights, [str(root / "clipB")], queries, tmp_path / "file"))
    assert "is a file" in capsys.readouterr().err


def test_a_rerun_with_other_expressions_or_model_is_named_and_overwrite_redoes_it(
    checkpoints, videos, tmp_path, capsys
):
    root, queries = videos
    os.remove(root / "broken.mp4")
    cfg_path, weights = checkpoints["CMDy"]
    out = tmp_path / "out"
    inputs = [str(root / "clipA.mp4"), str(root / "clipB")]
    assert _infer(_argv(cfg_path, weights, inputs, queries, out)) == 0
    record = json.loads((out / "clipA.json").read_text())["record"]
    assert record["expressions"] == {"0": "a man is running", "1": "red dog"}
    assert set(record["model"]) == {"config", "weights"}
    first = _tree(out)
    # an unfinished video (its masks and mark, no JSON: killed before the JSON) is redone
    os.remove(out / "clipB.json")
    assert _infer(_argv(cfg_path, weights, inputs, queries, out)) == 0
    assert _tree(out) == first
    # an added expression and a changed one: named, refused, nothing touched
    edited = json.loads(queries.read_text())
    edited["videos"]["clipA"]["expressions"]["2"] = {"exp": "a man walking"}
    edited["videos"]["clipB"]["expressions"]["0"] = {"exp": "red dog jumping"}
    queries.write_text(json.dumps(edited))
    with pytest.raises(SystemExit):
        _infer(_argv(cfg_path, weights, inputs, queries, out))
    err = capsys.readouterr().err
    assert "clipA (expressions added: 2)" in err and "clipB (expressions changed: 0)" in err
    assert "--overwrite" in err and _tree(out) == first
    # another config: named as such
    other = _argv(cfg_path, weights, [inputs[1]], queries, out) + ["TEST.VIDEO.BATCH_SIZE", "2"]
    with pytest.raises(SystemExit):
        _infer(other)
    assert "another config" in capsys.readouterr().err
    # --overwrite redoes both with the new expressions
    assert _infer(_argv(cfg_path, weights, inputs, queries, out, "--overwrite")) == 0
    assert sorted(os.listdir(out / "Annotations" / "clipA")) == ["0", "1", "2"]
    info = json.loads((out / "clipB.json").read_text())
    assert info["record"]["expressions"] == {"0": "red dog jumping"}
    assert info["expressions"]["0"]["exp"] == "red dog jumping"


def test_a_video_named_failed_keeps_its_result(checkpoints, videos, tmp_path):
    root, queries = videos
    cfg_path, weights = checkpoints["CMDy"]
    os.rename(root / "clipB", root / "failed")
    queries.write_text(json.dumps({"videos": {"failed": {"expressions": {"0": {"exp": "a man"}}}}}))
    out = tmp_path / "out"
    assert _infer(_argv(cfg_path, weights, [str(root / "failed")], queries, out)) == 0
    assert json.loads((out / "failed.json").read_text())["video_id"] == "failed"


@pytest.mark.parametrize("where", ["masks", "rename", "json"])
def test_a_shard_stopped_anywhere_resumes_to_the_bytes_of_one_run(
    checkpoints, videos, tmp_path, monkeypatch, where
):
    """Two shards into one folder equal one run; a shard stopped while writing a mask, at the
    rename of its folder or at its JSON resumes to the same bytes."""
    import aamn.apps.batch_inference as bi

    root, queries = videos
    os.remove(root / "broken.mp4")
    cfg_path, weights = checkpoints["CMDy"]
    inputs = [str(root / "clipA.mp4"), str(root / "clipB")]
    whole = tmp_path / "whole"
    assert _infer(_argv(cfg_path, weights, inputs, queries, whole)) == 0
    out = tmp_path / "sharded"
    real = {"masks": bi._write_mask_png, "rename": os.rename, "json": bi.atomic_path}[where]
    calls = []

    def stop(*a, **k):
        calls.append(a)
        if len(calls) == (3 if where == "masks" else 1):
            raise KeyboardInterrupt  # Ctrl-C (or a kill) in the middle of the shard
        return real(*a, **k)

    target = {
        "masks": (bi, "_write_mask_png"),
        "rename": (bi.os, "rename"),
        "json": (bi, "atomic_path"),
    }[where]
    monkeypatch.setattr(*target, stop)
    with pytest.raises(KeyboardInterrupt):
        _infer(_argv(cfg_path, weights, inputs, queries, out, "--shard", "0/2"))
    monkeypatch.undo()
    for shard in ("0/2", "1/2"):
        assert _infer(_argv(cfg_path, weights, inputs, queries, out, "--shard", shard)) == 0
    assert _tree(out, state=False) == _tree(whole, state=False)
    assert not [n for n in os.listdir(out / STATE_DIR) if ".tmp-" in n]  # nothing left over


def test_a_process_writes_only_its_share_of_the_videos(checkpoints, videos, tmp_path, monkeypatch):
    """The second of two processes (``--num-gpus 2``) writes the second video only."""
    import detectron2.utils.comm as comm

    from aamn.apps.batch_inference import model_record, plan_videos

    root, queries = videos
    cfg_path, weights = checkpoints["CMDy"]
    infer = load_script("tools/infer.py")
    out = tmp_path / "out"
    argv = _argv(cfg_path, weights, [str(root / "clipA.mp4"), str(root / "clipB")], queries, out)
    args = infer.build_parser().parse_args(argv)
    args.opts = list(args.opts)
    jobs = infer.plan(args, None)
    cfg = get_aamn_cfg(cfg_path, ["MODEL.WEIGHTS", weights])
    model = model_record(cfg)
    monkeypatch.setattr(comm, "get_rank", lambda: 1)
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(comm, "all_gather", lambda x: [x])
    infer.run(args, plan_videos(jobs, str(out), model), model)
    assert sorted(p for p in os.listdir(out) if p.endswith(".json")) == ["clipB.json"]


@pytest.mark.parametrize("where", ["_write_mask_png", "rename"])
def test_a_shard_killed_outright_reruns_to_the_bytes_of_one_run(
    checkpoints, videos, tmp_path, where
):
    """A shard's process ended without unwinding (``os._exit``, as SIGKILL does: no ``finally``
    runs) while writing a mask or at the rename of a video's folder: the rerun removes what it
    left and the shards give one run's bytes."""
    root, queries = videos
    os.remove(root / "broken.mp4")
    cfg_path, weights = checkpoints["CMDy"]
    inputs = [str(root / "clipA.mp4"), str(root / "clipB")]
    whole, out = tmp_path / "whole", tmp_path / "sharded"
    assert _infer(_argv(cfg_path, weights, inputs, queries, whole)) == 0
    argv = _argv(cfg_path, weights, inputs, queries, out, "--shard", "1/2")
    target = "bi" if where == "_write_mask_png" else "bi.os"
    nth = 2 if where == "_write_mask_png" else 1  # shard 1/2 is clipB alone: one rename
    killer = (
        "import os, sys\n"
        "import aamn.apps.batch_inference as bi\n"
        "calls = []\n"
        f"real = {target}.{where}\n"
        "def die(*a, **k):\n"
        "    calls.append(1)\n"
        f"    if len(calls) == {nth}:\n"
        "        os._exit(9)\n"
        "    return real(*a, **k)\n"
        f"{target}.{where} = die\n"
        "from aamn.cli.infer import main\n"
        f"main({argv!r})\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", killer], cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 9
    assert [n for n in os.listdir(out / STATE_DIR) if ".tmp-" in n]  # left by the killed shard
    for shard in ("1/2", "0/2"):
        assert _infer(_argv(cfg_path, weights, inputs, queries, out, "--shard", shard)) == 0
    assert _tree(out, state=False) == _tree(whole, state=False)
    assert not [n for n in os.listdir(out / STATE_DIR) if ".tmp-" in n]
