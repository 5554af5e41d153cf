"""``tools/web_demo.py`` as a person uses it: the page in headless Chromium (Debian's ``chromium``
and ``chromium-driver``) on 127.0.0.1, a real camera video uploaded, two queries typed, the overlay
video playing, the tubes picture shown, the masks JSON holding every frame; nothing requested from
any other address."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from fixtures import real_video_path
from modeling_helpers import vocab_file  # noqa: F401
from test_predictor import REPO, checkpoints  # noqa: F401
from test_weights_urls import _with_detector_record


EXAMPLE_QUERIES = ["a man is talking", "the woman on the left"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(checkpoints, tmp_path):  # noqa: F811
    weights = _with_detector_record(checkpoints, tmp_path)
    port = _free_port()
    cmd = [sys.executable, os.path.join(REPO, "tools", "web_demo.py")]
    cmd += ["--config-file", checkpoints["AAMN"][0], "--port", str(port)]
    # an example as the synthetic benchmark's are: a video of an A2D-layout tree, its annotated
    # queries in the tree's synthetic_meta.json
    clips = tmp_path / "bench" / "a2d_sentences" / "Release" / "clips320H"
    clips.mkdir(parents=True)
    shutil.copyfile(real_video_path(), clips / "example1.mp4")
    (tmp_path / "bench" / "a2d_sentences" / "synthetic_meta.json").write_text(json.dumps(
        {"queries": [{"video_id": "example1", "query": q} for q in EXAMPLE_QUERIES]}))  # fmt: skip
    cmd += ["--examples", str(clips / "*.mp4"), "--workdir", str(tmp_path / "work")]
    cmd += ["MODEL.WEIGHTS", weights]
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    start = time.time()
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            break
        except OSError:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            assert time.time() - start < 120, "the server did not start"
            time.sleep(0.2)
    yield url
    proc.terminate()  # SIGTERM, as a service manager stops it: its results are removed
    proc.wait(timeout=30)
    log.close()
    assert os.listdir(tmp_path / "work") == [], (tmp_path / "server.log").read_text()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):  # make test installs them as root, and says how otherwise
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed "
            "(sudo apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1200,1500",
        "--disable-dev-shm-usage",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


def test_the_page_segments_an_uploaded_video(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from selenium.webdriver.support.ui import Select

    browser.get(server)
    # picking the example fills in its annotated queries; the model's words are listed
    Select(browser.find_element(By.ID, "example")).select_by_value("example1.mp4")
    assert browser.find_element(By.ID, "queries").get_attribute("value").splitlines() == (
        EXAMPLE_QUERIES)  # fmt: skip
    vocabulary = browser.find_element(By.ID, "vocabulary")
    vocabulary.click()
    assert "words the" in vocabulary.text and len(vocabulary.text.split()) > 10
    Select(browser.find_element(By.ID, "example")).select_by_value("")
    browser.find_element(By.ID, "queries").clear()
    browser.find_element(By.ID, "submit").click()  # nothing given: the page says what is missing
    error = WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, "error")))
    assert "Type at least one query" in error.text
    source = real_video_path()  # 120 frames, 176 x 144, 29.97 frames/s
    browser.find_element(By.ID, "video").send_keys(source)
    queries = browser.find_element(By.ID, "queries")
    queries.clear()
    queries.send_keys("a man is talking\nwoman walking to the left")
    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 300).until(ec.staleness_of(page))  # the answer's page, not this one
    WebDriverWait(browser, 300).until(
        ec.any_of(
            ec.presence_of_element_located((By.ID, "overlay")),
            ec.presence_of_element_located((By.ID, "error")),
        )
    )
    assert not browser.find_elements(By.ID, "error"), browser.find_element(By.ID, "error").text
    duration = browser.execute_async_script(
        """const done = arguments[arguments.length - 1], v = document.getElementById('overlay');
        if (v.readyState >= 1) done(v.duration);
        else { v.addEventListener('loadedmetadata', () => done(v.duration));
               v.addEventListener('error', () => done(-1)); }"""
    )
    assert duration == pytest.approx(120 / 29.97, abs=0.1)
    state = browser.execute_async_script(
        """const done = arguments[arguments.length - 1], v = document.getElementById('overlay');
        v.play().then(() => setTimeout(() => done([v.currentTime, v.paused, v.videoWidth]), 800),
                      (e) => done([-1, true, String(e)]));"""
    )
    assert state[0] > 0 and state[1] is False and state[2] == 3 * 176  # playing, drawn at 3x
    tubes = browser.find_element(By.ID, "tubes")
    assert browser.execute_script("return arguments[0].naturalWidth", tubes) > 0
    href = browser.find_element(By.ID, "masks").get_attribute("href")
    masks = json.loads(urllib.request.urlopen(href, timeout=10).read())
    assert masks["num_frames"] == len(masks["frames"]) == 120
    assert all(len(f["queries"]) == 2 for f in masks["frames"])
    assert masks["frames"][0]["queries"][1]["segmentation"]["size"] == [144, 176]
    browser.save_screenshot(str(tmp_path / "web_demo.png"))
    if os.environ.get("AAMN_WEB_DEMO_SCREENSHOT"):  # refresh docs/images/web_demo.png
        browser.save_screenshot(os.environ["AAMN_WEB_DEMO_SCREENSHOT"])
    # everything the page loaded came from the app on 127.0.0.1
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    assert urls and all(u.startswith((server, "data:", "blob:")) for u in urls), urls


def test_the_app_offers_examples_and_refuses_what_it_cannot_use(checkpoints, tmp_path):  # noqa: F811
    import io

    from aamn.engine import VideoPredictor
    from aamn.apps.web_demo import create_app

    from test_predictor import _cfg, _square_frames, _write_mp4

    example = _write_mp4(tmp_path / "squares.mp4", _square_frames(7))
    predictor = VideoPredictor(_cfg(checkpoints, "CMDy"))
    app = create_app(predictor, {"squares.mp4": example}, str(tmp_path / "w"),
                     example_queries={"squares.mp4": ["a man", "red dog"]})  # fmt: skip
    client = app.test_client()
    page = client.get("/").get_data(as_text=True)
    assert '<option value="squares.mp4">' in page
    # the model's known words, and the example's annotated queries for the page to fill in
    known = predictor.known_words()
    assert known and f"The {len(known)} words the" in page and " ".join(known) in page
    assert '{"squares.mp4": ["a man", "red dog"]}' in page
    res = client.post("/segment", data={"example": "squares.mp4", "queries": "a man\nred dog\n"})
    html = res.get_data(as_text=True)
    assert res.status_code == 200 and "squares.mp4: 7 frames" in html
    (job,) = os.listdir(tmp_path / "w")
    masks = client.get(f"/result/{job}/masks.json").get_json()
    assert masks["num_frames"] == 7 and masks["queries"] == ["a man", "red dog"]
    assert client.get(f"/result/{job}/overlay.mp4").status_code == 200
    assert client.get(f"/result/{job}/tubes.png").data[:4] == b"\x89PNG"
    for bad in (
        f"/result/{job}/../../etc/passwd",
        f"/result/{job}/input.mp4",
        "/result/x/masks.json",
    ):
        assert client.get(bad).status_code == 404
    cases = [
        ({"example": "nope.mp4", "queries": "a man"}, "Upload a video or pick an example"),
        ({"video": (io.BytesIO(b"x"), "notes.txt"), "queries": "a man"}, "notes.txt: expected a"),
        ({"video": (io.BytesIO(b"broken"), "clip.mp4"), "queries": "a man"}, "Cannot read the"),
        ({"example": "squares.mp4", "queries": "zebra"}, "No word of the query"),
        ({"example": "squares.mp4", "queries": "zebra"}, "the nearest known words: "),
    ]
    for data, message in cases:
        res = client.post("/segment", data=data, content_type="multipart/form-data")
        assert res.status_code == 400 and message in res.get_data(as_text=True), message
    assert os.listdir(tmp_path / "w") == [job]  # failed requests leave nothing


def test_examples_of_the_synthetic_benchmark_carry_their_annotated_queries(tmp_path):
    from aamn.cli.web_demo import annotated_queries

    clips = tmp_path / "a2d_sentences" / "Release" / "clips320H"
    clips.mkdir(parents=True)
    (clips / "vidA.mp4").write_bytes(b"")
    (tmp_path / "a2d_sentences" / "synthetic_meta.json").write_text(json.dumps({"queries": [
        {"video_id": "vidA", "query": "the red dog"}, {"video_id": "vidB", "query": "a cat"},
        {"video_id": "vidA", "query": "a baby crawling"}]}))  # fmt: skip
    other = tmp_path / "elsewhere.mp4"
    other.write_bytes(b"")
    found = annotated_queries({"vidA.mp4": str(clips / "vidA.mp4"), "mine.mp4": str(other)})
    assert found == {"vidA.mp4": ["the red dog", "a baby crawling"]}


def test_the_page_serves_its_own_files_only_and_keeps_its_limits(
    checkpoints, tmp_path, monkeypatch
):  # noqa: F811
    """No static folder (Flask's default serves <cwd>/static, dotfiles too); the limits are
    answered with a page naming them; unknown words are shown; uploads are stored under the app's
    own name; at most keep_results results stay; cleanup removes what the app made."""
    import io

    from aamn.engine import VideoPredictor
    from aamn.apps.web_demo import create_app

    from fixtures import load_script
    from test_predictor import _cfg, _square_frames, _write_mp4

    (tmp_path / "static").mkdir()
    (tmp_path / "static" / ".env").write_text("SECRET=1")
    monkeypatch.chdir(tmp_path)
    example = _write_mp4(tmp_path / "squares.mp4", _square_frames(7))
    work = tmp_path / "w"
    work.mkdir()
    (work / "mine.txt").write_text("the user's")
    app = create_app(
        VideoPredictor(_cfg(checkpoints, "CMDy")),
        {"squares.mp4": example},
        str(work),
        max_upload_mb=1,
        max_queries=2,
        max_frames=6,
        keep_results=1,
    )
    client = app.test_client()
    assert client.get("/static/.env").status_code == 404
    big = {"video": (io.BytesIO(b"0" * (2 << 20)), "big.mp4"), "queries": "a man"}
    res = client.post("/segment", data=big, content_type="multipart/form-data")
    assert res.status_code == 413 and "at most 1 MB" in res.get_data(as_text=True)
    res = client.post("/segment", data={"example": "squares.mp4", "queries": "a\nb\nc"})
    assert res.status_code == 400 and "at most 2 a request" in res.get_data(as_text=True)
    res = client.post("/segment", data={"example": "squares.mp4", "queries": "a man"})
    assert res.status_code == 400 and "7 frames; this page segments at most 6" in res.get_data(
        as_text=True
    )
    app = create_app(
        VideoPredictor(_cfg(checkpoints, "CMDy")), {}, str(work), max_frames=10, keep_results=1
    )
    client = app.test_client()
    jobs = []
    for query in ("a man zebra", "red dog"):
        with open(example, "rb") as f:
            data = {"video": (f, "../../escape.mp4"), "queries": query}
            res = client.post("/segment", data=data, content_type="multipart/form-data")
        html = res.get_data(as_text=True)
        assert res.status_code == 200, html
        assert ('id="unknown"' in html and "zebra" in html) == (query == "a man zebra")
        jobs.append(next(n for n in os.listdir(work) if n not in ["mine.txt"] + jobs))
        assert sorted(os.listdir(work / jobs[-1])) == sorted(
            ["input.mp4", "masks.json", "overlay.mp4", "tubes.png"]
        )
    assert not (tmp_path / "escape.mp4").exists()
    assert sorted(os.listdir(work)) == sorted(["mine.txt", jobs[1]])  # keep_results=1
    assert client.get(f"/result/{jobs[0]}/masks.json").status_code == 404
    app.cleanup()
    assert os.listdir(work) == ["mine.txt"]  # the user's own file stays
    # the tool listens on this machine only unless --host says otherwise
    args = load_script("tools/web_demo.py").build_parser().parse_args(["--config-file", "c"])
    assert args.host == "127.0.0.1" and args.max_upload_mb == 512
