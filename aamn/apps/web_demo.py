"""A page in the browser for a referring-video model (``tools/web_demo.py``), on Flask.

The user uploads a video (or picks one of the example videos), types one query per line and
submits; the page answers with the overlay video (H.264, playing in the browser), the tubes picture
and the masks JSON to download.  Everything runs on this machine with local weights: the page loads
nothing from elsewhere (no fonts, scripts or styles from other hosts).

One request is segmented at a time (the model is shared); each result lives in its own folder of
the work directory, named by a random id, and the files served are only those three names of the
results this app made.  Limits (upload size, queries per request, video length, results kept) are
arguments of ``create_app`` and flags of the tool.
"""

import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..data.video import VideoStream, VideoWriter
from ..utils.io import atomic_path
from ..utils.visualizer import display_scale, draw_video_frame, draw_video_tubes
from ..engine.predictor import QueryError, result_record

__all__ = ["create_app", "segment_video"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
RESULT_FILES = ("overlay.mp4", "tubes.png", "masks.json")
_JOB = re.compile(r"^[0-9a-f]{32}$")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
 body { font-family: sans-serif; margin: 2em; max-width: 70em; color: #222; }
 fieldset { margin-bottom: 1em; } textarea { width: 100%; }
 .error { color: #b00020; font-weight: bold; } video, img { max-width: 100%; }
 .meta { color: #555; }
</style></head><body>
<h1>{{ title }}</h1>
<p class="meta">{{ model }} &middot; weights {{ weights }} &middot; {{ limits }}</p>
<form id="segment" method="post" action="{{ url_for('segment') }}" enctype="multipart/form-data">
 <fieldset><legend>Video</legend>
  <label>Upload <input type="file" name="video" id="video" accept="video/*"></label>
  {% if examples %}<p><label>or an example
   <select name="example" id="example"><option value="">(none)</option>
   {% for name in examples %}<option value="{{ name }}">{{ name }}</option>{% endfor %}
   </select></label></p>{% endif %}
 </fieldset>
 <fieldset><legend>Queries, one per line</legend>
  <textarea name="queries" id="queries" rows="3">{{ queries }}</textarea>
  {% if known_words %}<details id="vocabulary"><summary>The {{ known_words|length }} words the
   model knows (others are read as unknown)</summary><p class="meta">{{ known_words|join(' ') }}</p>
  </details>{% endif %}
 </fieldset>
 <button type="submit" id="submit">Segment</button>
</form>
{% if example_queries %}<script>
 // Picking an example that has annotated queries fills them in (the user may edit them).
 const exampleQueries = {{ example_queries|tojson }};
 document.getElementById("example").addEventListener("change", function () {
   const q = exampleQueries[this.value];
   if (q) { document.getElementById("queries").value = q.join("\\n"); }
 });
</script>{% endif %}
{% if error %}<p class="error" id="error">{{ error }}</p>{% endif %}
{% if job %}
<section id="result">
 <h2>{{ video_name }}: {{ frames }} frames, {{ seconds }} s</h2>
 {% if unknown %}<div id="unknown" class="meta"><p>Words the model does not know (read as
  unknown):</p><ul>{% for q, words in unknown.items() %}<li>{{ q }}: {{ words|join(', ') }}</li>
  {% endfor %}</ul></div>{% endif %}
 <video id="overlay" controls muted playsinline
  src="{{ url_for('result', job=job, name='overlay.mp4') }}"></video>
 <h3>Tubes</h3>
 <img id="tubes" alt="tubes" src="{{ url_for('result', job=job, name='tubes.png') }}">
 <p><a id="masks" download
  href="{{ url_for('result', job=job, name='masks.json') }}">masks JSON</a></p>
</section>
{% endif %}
</body></html>
"""


def segment_video(predictor, source: str, queries: Sequence[str], folder: str) -> Dict:
    """Run ``predictor`` on ``source`` with ``queries`` and write ``RESULT_FILES`` into
    ``folder``: the overlay video (drawn at ``display_scale``), the tubes picture of the first
    clip (``draw_video_tubes``) and every frame's masks (COCO RLE at the video's size).  Returns
    the JSON written."""
    stream = VideoStream(source)  # checked by the predictor before its first frame
    scale = display_scale(stream.height, stream.width)
    size = (stream.height * scale, stream.width * scale)
    frames_json: List[Dict] = []
    first_clip: List[Dict] = []
    with atomic_path(os.path.join(folder, "overlay.mp4"), suffix=".mp4") as tmp:
        with VideoWriter(tmp, stream.fps, size[1], size[0], name="the overlay video") as writer:
            for item in predictor(stream, list(queries)):
                writer.write(draw_video_frame(item["image"], item["queries"], size=size))
                frames_json.append(
                    {
                        "frame": item["index"] + 1,
                        "queries": [result_record(r) for r in item["queries"]],
                    }
                )
                if len(first_clip) < 2 * predictor.half_length + 1:
                    first_clip.append(item)
    import cv2

    picture = draw_video_tubes([i["image"] for i in first_clip], [i["queries"] for i in first_clip])
    with atomic_path(os.path.join(folder, "tubes.png"), suffix=".png") as tmp:
        if not cv2.imwrite(tmp, np.ascontiguousarray(picture[..., ::-1])):
            raise OSError("cannot write the tubes picture")
    out = {
        "video": os.path.basename(source),
        "fps": stream.fps,
        "height": stream.height,
        "width": stream.width,
        "num_frames": len(frames_json),
        "queries": list(queries),
        "model": predictor.cfg.MODEL.META_ARCHITECTURE,
        "frames": frames_json,
    }
    with atomic_path(os.path.join(folder, "masks.json")) as tmp, open(tmp, "w") as f:
        json.dump(out, f)
    return out


# The page's limits (each a flag of tools/web_demo.py): one request holds the model while it runs.
MAX_UPLOAD_MB = 512
MAX_QUERIES = 10
MAX_FRAMES = 1800  # one minute at 30 frames/s
KEEP_RESULTS = 20


def create_app(
    predictor,
    examples: Optional[Dict[str, str]] = None,
    workdir: Optional[str] = None,
    example_queries: Optional[Dict[str, List[str]]] = None,
    max_upload_mb: int = MAX_UPLOAD_MB,
    max_queries: int = MAX_QUERIES,
    max_frames: int = MAX_FRAMES,
    keep_results: int = KEEP_RESULTS,
):
    """The Flask app of ``predictor``: ``examples`` maps names to video paths offered in the
    page, ``example_queries`` names to their annotated queries (picking the example fills them
    in); the page lists the model's known words; results go to ``workdir`` (default a new
    temporary folder).

    Limits, each answered with a page that names it (status 400, or 413 for the upload):
    ``max_upload_mb`` (an upload's size), ``max_queries`` (queries per request),
    ``max_frames`` (a video's length).  At most ``keep_results`` results are kept (the oldest
    are removed); ``app.cleanup()`` removes every result the app made (and the work folder when
    the app created it).  The app serves its page and its results only: no static folder.
    """
    from flask import Flask, abort, render_template_string, request, send_from_directory

    # static_folder=None: Flask would otherwise serve <working folder>/static/ (dotfiles too).
    app = Flask("aamn.web_demo", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = max_upload_mb * 1024 * 1024
    created = not workdir
    workdir = workdir or tempfile.mkdtemp(prefix="aamn-web-demo-")
    os.makedirs(workdir, exist_ok=True)
    examples = dict(examples or {})
    lock = threading.Lock()
    jobs: List[str] = []  # this app's results, oldest first
    base = {
        "title": "Text-based video segmentation",
        "model": predictor.cfg.MODEL.META_ARCHITECTURE,
        "weights": os.path.basename(str(predictor.cfg.MODEL.WEIGHTS)),
        "examples": sorted(examples),
        "example_queries": {k: list(v) for k, v in (example_queries or {}).items() if v},
        "known_words": predictor.known_words(),
        "limits": f"at most {max_queries} queries, {max_frames} frames and {max_upload_mb} MB",
    }

    def page(status=200, **values):
        return render_template_string(PAGE, **{**base, "queries": "", **values}), status

    def forget(job):
        shutil.rmtree(os.path.join(workdir, job), ignore_errors=True)
        if job in jobs:
            jobs.remove(job)

    @app.errorhandler(413)
    def too_large(_):
        return page(
            413,
            error=f"The upload is larger than this page takes: at most {max_upload_mb} MB "
            "(tools/web_demo.py --max-upload-mb).",
        )

    @app.get("/")
    def index():
        return page()

    @app.post("/segment")
    def segment():
        queries = [q.strip() for q in request.form.get("queries", "").splitlines() if q.strip()]
        upload = request.files.get("video")
        example = request.form.get("example", "")
        text = "\n".join(queries)
        if not queries:
            return page(400, error="Type at least one query.", queries=text)
        if len(queries) > max_queries:
            return page(
                400,
                error=f"{len(queries)} queries: this page takes at most {max_queries} a request "
                "(tools/web_demo.py --max-queries).",
                queries=text,
            )
        job = uuid.uuid4().hex
        folder = os.path.join(workdir, job)
        os.makedirs(folder)
        if upload is not None and upload.filename:
            suffix = os.path.splitext(upload.filename)[1].lower()
            if suffix not in VIDEO_SUFFIXES:
                shutil.rmtree(folder)
                return page(
                    400,
                    error=f"{upload.filename}: expected a video ({', '.join(VIDEO_SUFFIXES)})",
                    queries=text,
                )
            # Saved under a name of the app's, never the upload's own (a name is not a path).
            source = os.path.join(folder, "input" + suffix)
            upload.save(source)
            name = upload.filename
        elif example in examples:
            source, name = examples[example], example
        else:
            shutil.rmtree(folder)
            return page(400, error="Upload a video or pick an example.", queries=text)
        start = time.perf_counter()
        try:
            frames = VideoStream(source).num_frames
            if frames > max_frames:
                raise ValueError(
                    f"{name}: {frames} frames; this page segments at most {max_frames} "
                    "(tools/web_demo.py --max-frames)"
                )
            unknown = {q: predictor.unknown_words(q) for q in queries}
            with lock:  # one request at a time uses the model and edits the list of results
                result = segment_video(predictor, source, queries, folder)
                jobs.append(job)
                while len(jobs) > keep_results:  # the oldest results go
                    forget(jobs[0])
        except (QueryError, OSError, ValueError, KeyError) as e:
            shutil.rmtree(folder, ignore_errors=True)
            message = e.args[0] if isinstance(e, KeyError) else str(e)
            return page(400, error=message.replace(folder + os.sep, ""), queries=text)
        return page(
            job=job,
            video_name=name,
            frames=result["num_frames"],
            seconds=f"{time.perf_counter() - start:.1f}",
            queries=text,
            unknown={q: w for q, w in unknown.items() if w},
        )

    @app.get("/result/<job>/<name>")
    def result(job, name):
        if not _JOB.match(job) or name not in RESULT_FILES or job not in jobs:
            abort(404)
        return send_from_directory(os.path.join(workdir, job), name, conditional=True)

    def cleanup():
        """Remove every result of this app; the work folder too when the app created it."""
        with lock:  # after a request still running
            for job in list(jobs):
                forget(job)
        if created:
            shutil.rmtree(workdir, ignore_errors=True)

    app.workdir = workdir
    app.cleanup = cleanup
    return app
