"""Reading frames of a video by 1-based frame number, without decoding the whole video.

Two kinds of video are read:

- an mp4 file (A2D's ``Release/clips320H/<video_id>.mp4``), decoded with OpenCV;
- a folder of PNG frames named ``00001.png, 00002.png, ...`` (J-HMDB's ``Rename_Images``).

Frame numbers are 1-based everywhere in the project (as in the annotation file names); frame ``t``
is the ``t - 1``-th decoded frame.  For an mp4, the reader seeks to the first needed frame
(``CAP_PROP_POS_FRAMES``) and then grabs forward, retrieving only the frames asked for; an open
capture is kept per process (a small LRU), so reading the next frames of the same video continues
from where the last read stopped.  The frame count and size of each video are cached per process
(keyed by the file's modification time and size).

Set the environment variable ``AAMN_VIDEO_SEEK=0`` to decode from the start of the video instead of
seeking (for a codec or container where OpenCV's seeking is not frame-accurate).

A damaged video: when decoding stops more than ``HEADER_SLACK`` frames before the count in the
video's header, reading it raises an ``IOError`` naming the file and the first frame that does not
decode (a frame that did not decode is never replaced by another).  Up to ``HEADER_SLACK`` missing
tail frames are a header that over-counts (common in mp4 files): the video is then as long as what
decodes, with one warning naming it.  FFmpeg's own decoder messages are silenced
(``OPENCV_FFMPEG_LOGLEVEL``, default -8 here; set it to 24 to see them again): the project reports
what failed.
"""

import logging
import os
import re
import threading
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from .frame_cache import frame_cache

__all__ = [
    "VideoReader",
    "VideoStream",
    "VideoWriter",
    "folder_frames",
    "read_frames",
    "video_info",
]

logger = logging.getLogger(__name__)

# FFmpeg prints one line per damaged packet; the reader reports a damaged video itself.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

_PNG_NAME = re.compile(r"^(\d+)\.png$")
# Tail frames an mp4 header may over-count before a shorter decode is called damage.
HEADER_SLACK = 2
# Decode forward instead of seeking when the next needed frame is at most this many frames ahead.
_SEEK_GAP = 8
_MAX_OPEN_CAPTURES = 4

_lock = threading.RLock()
_info_cache = {}  # (path, mtime_ns, size) -> (num_frames, height, width)
_decodable = {}  # path -> number of frames that really decode (when smaller than the header's)
_captures = OrderedDict()  # (pid, path, mtime, size) -> [cv2.VideoCapture, next position]
_inherited = []  # captures a forked child inherited: kept alive, never used nor released


def _forget_captures_after_fork():
    # A capture opened by the parent must not be released in a forked child (a data-loader
    # worker): FFmpeg's close would wait on the parent's decoding threads, which do not exist in
    # the child, and hang.  The child keeps them referenced and opens its own.
    global _captures, _lock
    _inherited.append(_captures)
    _captures = OrderedDict()
    _lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_captures_after_fork)


def _cv2():
    import cv2

    return cv2


def _read_image(fn):
    """A frame image as uint8 ``(H, W, 3)`` BGR; ``IOError`` naming the file when it does not
    decode."""
    cv2 = _cv2()
    frame = cv2.imread(fn, cv2.IMREAD_COLOR)
    if frame is None:
        raise IOError(f"Cannot read the frame image {fn}")
    return frame


def check_decoded_length(path, header, decoded):
    """A video whose header gives ``header`` frames decodes ``decoded``: warn (``HEADER_SLACK`` or
    fewer missing at the end) or raise ``IOError`` naming the file and the first lost frame."""
    if decoded >= header:
        return
    if header - decoded > HEADER_SLACK:
        raise IOError(
            f"The video {path} is damaged: its header gives {header} frames but decoding stops "
            f"at frame {decoded + 1} (frames {decoded + 1}..{header} do not decode).  Re-encode "
            "or replace the file"
        )
    logger.warning(
        "Video %s: the header gives %d frames, %d decode; the video is %d frames long",
        path,
        header,
        decoded,
        decoded,
    )


def _stat_key(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"Video not found: {path}") from None
    return (path, st.st_mtime_ns, st.st_size)


def _png_frames(folder):
    """Sorted 1-based frame numbers of the ``<frame>.png`` files of a folder."""
    nums = []
    with os.scandir(folder) as it:
        for entry in it:
            m = _PNG_NAME.match(entry.name)
            if m:
                nums.append(int(m.group(1)))
    return sorted(nums)


_JPEG_SUFFIXES = (".jpg", ".jpeg")


def folder_frames(folder):
    """The file names of a frame folder's frames, in order (frame ``t`` is the ``t``-th):
    ``<n>.png`` files numbered ``1..N`` (J-HMDB's ``Rename_Images``; a gap is an error), else the
    JPEG files sorted by name (Ref-YouTube-VOS's and DAVIS's ``JPEGImages/<video>``:
    ``00000.jpg``, ``00005.jpg``, ...: every listed frame, whatever its number).

    Raises:
        IOError: no frames, or numbered PNGs with a gap.
    """
    nums = _png_frames(folder)
    if nums:
        if nums != list(range(1, len(nums) + 1)):
            missing = sorted(set(range(1, nums[-1] + 1)) - set(nums))[:5]
            raise IOError(f"The frames of {folder} are not numbered 1..N: missing {missing}")
        return [f"{n:05d}.png" for n in nums]
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(_JPEG_SUFFIXES))
    if not names:
        raise IOError(
            f"No frames in the video folder {folder} ('<frame:05d>.png' numbered from 1, or JPEG "
            "files)"
        )
    return names


def video_info(path):
    """``(num_frames, height, width)`` of an mp4 file or a frame folder (``folder_frames``; cached
    per process).

    Raises:
        FileNotFoundError: the file / folder does not exist.
        IOError: OpenCV cannot open the video, or the folder holds no frames.
    """
    path = os.fspath(path)
    key = _stat_key(path)
    with _lock:
        info = _info_cache.get(key)
    if info is not None:
        return info
    cv2 = _cv2()
    if os.path.isdir(path):
        names = folder_frames(path)
        first = _read_image(os.path.join(path, names[0]))
        info = (len(names), int(first.shape[0]), int(first.shape[1]))
    else:
        cap = cv2.VideoCapture(path)
        try:
            if not cap.isOpened():
                raise IOError(f"OpenCV cannot open the video {path} (corrupt or unsupported file)")
            n = int(round(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
            h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
            if n <= 0 or h <= 0 or w <= 0:
                # Header without a frame count: count by decoding (slow, done once).
                n, frame = 0, None
                while True:
                    ok, f = cap.read()
                    if not ok:
                        break
                    n, frame = n + 1, f
                if n == 0:
                    raise IOError(f"The video {path} has no decodable frame")
                h, w = frame.shape[:2]
        finally:
            cap.release()
        info = (n, h, w)
    with _lock:
        _info_cache[key] = info
    return info


class VideoReader:
    """Frames of one video (an mp4 file or a frame folder: ``folder_frames``), by 1-based frame
    number.

    Attributes:
        path (str): the file or folder.
        num_frames (int): frames in the video (``len(reader)``).
        height, width (int): frame size.
    """

    def __init__(self, path):
        """
        Raises:
            FileNotFoundError: ``path`` does not exist.
            IOError: the video cannot be opened.
        """
        self.path = os.fspath(path)
        self.is_folder = os.path.isdir(self.path)
        self._names = None  # a folder's frame files (folder_frames), listed at the first read
        n, self.height, self.width = video_info(self.path)
        with _lock:
            self.num_frames = min(n, _decodable.get(self.path, n))

    def __len__(self):
        return self.num_frames

    def __repr__(self):
        return (
            f"VideoReader({self.path!r}, frames={self.num_frames}, size={self.height}x{self.width})"
        )

    def read(self, indices, format="RGB"):
        """Read frames by 1-based number.

        Args:
            indices: iterable of ints in ``[1, num_frames]`` (any order, repeats allowed).
            format: ``"RGB"`` or ``"BGR"`` channel order of the result.

        Returns:
            uint8 array ``(len(indices), H, W, 3)``, in the order of ``indices``.

        Raises:
            IndexError: a frame number outside ``[1, num_frames]``.
            IOError: a frame cannot be decoded / read.
        """
        indices = [int(i) for i in indices]
        if format not in ("RGB", "BGR"):
            raise ValueError(f"VideoReader.read: format must be 'RGB' or 'BGR', got {format!r}")
        for i in indices:
            if not 1 <= i <= self.num_frames:
                raise IndexError(
                    f"Frame {i} is outside the video {self.path} (frames 1..{self.num_frames})"
                )
        if not indices:
            return np.zeros((0, self.height, self.width, 3), np.uint8)
        needed = sorted(set(indices))
        if self.is_folder:
            got = self._read_folder(needed)
        else:
            got = self._read_mp4_cached(needed)
        out = np.stack([got[i] for i in indices])
        if format == "RGB":
            out = out[..., ::-1]
        return np.ascontiguousarray(out)

    def read_all(self, format="RGB"):
        """All frames: uint8 ``(num_frames, H, W, 3)``."""
        return self.read(range(1, self.num_frames + 1), format=format)

    # ------------------------------------------------------------------ internals (BGR)
    def _check_size(self, frame, i):
        if frame.shape[:2] != (self.height, self.width):
            raise IOError(
                f"Frame {i} of {self.path} is {frame.shape[0]}x{frame.shape[1]} (HxW); the video's "
                f"first frame is {self.height}x{self.width}"
            )

    def _read_folder(self, needed):
        if self._names is None:
            self._names = folder_frames(self.path)
        got = {}
        for i in needed:
            frame = _read_image(os.path.join(self.path, self._names[i - 1]))
            self._check_size(frame, i)
            got[i] = frame
        return got

    def _capture(self):
        """The process's open capture of this video and its next 0-based position."""
        cv2 = _cv2()
        # Keyed by the file's modification time and size too: a video rewritten at the same path
        # is opened again, not decoded from the replaced file's open handle.
        key = (os.getpid(),) + _stat_key(self.path)
        entry = _captures.get(key)
        if entry is not None:
            _captures.move_to_end(key)
            return entry
        # Never release a capture of another process (see _forget_captures_after_fork).
        for k in [k for k in _captures if k[0] != os.getpid()]:
            _inherited.append(_captures.pop(k))
        while len(_captures) >= _MAX_OPEN_CAPTURES:
            _, (old, _pos) = _captures.popitem(last=False)
            old.release()
        cap = cv2.VideoCapture(self.path)
        if not cap.isOpened():
            raise IOError(f"OpenCV cannot open the video {self.path} (corrupt or unsupported file)")
        entry = [cap, 0]
        _captures[key] = entry
        return entry

    def _read_mp4_cached(self, needed):
        """``_read_mp4`` through the process's ``frame_cache`` (frames that really decoded)."""
        if frame_cache.max_bytes <= 0:
            return self._read_mp4(needed)
        key = _stat_key(self.path)
        got = {}
        for i in needed:
            frame = frame_cache.get((key, i))
            if frame is not None:
                got[i] = frame
        missing = [i for i in needed if i not in got]
        if missing:
            decoded = self._read_mp4(missing)
            for i in missing:
                if i <= self.num_frames:  # not a repeated tail frame of a short decode
                    frame_cache.put((key, i), decoded[i])
            got.update(decoded)
        return got

    def _read_mp4(self, needed):
        cv2 = _cv2()
        with _lock:
            entry = self._capture()
            cap, pos = entry
            first, last = needed[0] - 1, needed[-1] - 1  # 0-based
            if first < pos or first - pos > _SEEK_GAP:
                if os.environ.get("AAMN_VIDEO_SEEK", "1") == "0" or first <= _SEEK_GAP:
                    if pos != 0:
                        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    pos = 0
                else:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, first)
                    pos = first
            want = set(i - 1 for i in needed)
            got = {}
            failed_at = None
            while pos <= last:
                if pos in want:
                    ok, frame = cap.read()
                else:
                    ok, frame = cap.grab(), None
                if not ok:
                    failed_at = pos
                    break
                if frame is not None:
                    self._check_size(frame, pos + 1)
                    got[pos + 1] = frame
                pos += 1
            entry[1] = pos if failed_at is None else 0
            if failed_at is not None:
                # The header promised more frames than decode: a damaged file raises; a header
                # that over-counts by at most HEADER_SLACK makes the video that much shorter, the
                # missing tail frames read as the last one (the clips' edge padding).
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                if failed_at == 0:
                    raise IOError(f"Cannot decode frame {needed[0]} of the video {self.path}")
                check_decoded_length(self.path, self.num_frames, failed_at)
                _decodable[self.path] = failed_at
                self.num_frames = failed_at
        if failed_at is not None:
            clamped = sorted(set(min(i, failed_at) for i in needed))
            frames = self._read_mp4(clamped)
            for i in needed:
                got[i] = frames[min(i, failed_at)]
        return got


def read_frames(path, indices, format="RGB"):
    """Shortcut for ``VideoReader(path).read(indices, format)``: uint8
    ``(len(indices), H, W, 3)``."""
    return VideoReader(path).read(indices, format=format)


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _natural_key(name):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


class VideoStream:
    """The frames of any video, decoded one after the other: for inference on a user's video.

    ``source`` is a video file OpenCV decodes (mp4, avi, mov, ...; any size, length and frame
    rate), a folder of image files (``.png`` / ``.jpg`` ..., in natural order of their names:
    ``frame2`` before ``frame10``), or frames in memory (uint8 ``(N, H, W, 3)`` RGB array or a list
    of ``(H, W, 3)`` arrays).  Iterating yields uint8 ``(H, W, 3)`` RGB frames; only one decoded
    frame is held at a time.

    Attributes:
        name (str): the file or folder name without extension ("frames" for arrays).
        fps (float): the frame rate (the file's; ``fps`` argument otherwise).
        height, width (int): frame size (of the first frame).
        num_frames (int): the frame count the source announces (a file's header may be wrong:
            ``frames_read`` after iterating is the true count).

    Raises (on construction):
        FileNotFoundError: ``source`` does not exist.
        IOError: OpenCV cannot open the file, it has no decodable frame, or the folder holds no
            image.
        ValueError: arrays of the wrong shape or type.
    """

    def __init__(self, source, fps=25.0):
        cv2 = _cv2()
        self.fps = float(fps)
        self.frames_read = 0
        self._frames = self._files = None
        # A folder's frame file names without extension (the frames' own names), else None.
        self.frame_names = None
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            self.path = path
            self.name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
            if not os.path.exists(path):
                raise FileNotFoundError(f"Video not found: {path}")
            if os.path.isdir(path):
                self._files = sorted(
                    (f for f in os.listdir(path) if f.lower().endswith(_IMAGE_SUFFIXES)),
                    key=_natural_key,
                )
                if not self._files:
                    raise IOError(
                        f"The folder {path} holds no image frames ({', '.join(_IMAGE_SUFFIXES)})"
                    )
                first = self._read_image(self._files[0])
                self.num_frames = len(self._files)
                self.frame_names = [os.path.splitext(f)[0] for f in self._files]
            else:
                cap = cv2.VideoCapture(path)
                try:
                    ok, frame = cap.read() if cap.isOpened() else (False, None)
                    if not ok:
                        raise IOError(
                            f"Cannot read the video {path}: OpenCV decodes no frame of it "
                            "(not a video, corrupt, or a codec this OpenCV build lacks)"
                        )
                    rate = cap.get(cv2.CAP_PROP_FPS)
                    self.fps = float(rate) if rate and rate > 0 and rate < 1000 else self.fps
                    self.num_frames = max(int(round(cap.get(cv2.CAP_PROP_FRAME_COUNT))), 1)
                finally:
                    cap.release()
                first = frame[..., ::-1]
        else:
            self.path, self.name = None, "frames"
            frames = source if isinstance(source, (list, tuple)) else list(np.asarray(source))
            if len(frames) == 0:
                raise ValueError("VideoStream: no frames given")
            for i, f in enumerate(frames):
                f = np.asarray(f)
                if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
                    raise ValueError(
                        f"VideoStream: frame {i} must be uint8 (H, W, 3) RGB, got {f.dtype} "
                        f"{f.shape}"
                    )
            self._frames = frames
            first = np.asarray(frames[0])
            self.num_frames = len(frames)
        self.height, self.width = int(first.shape[0]), int(first.shape[1])

    @classmethod
    def from_camera(cls, index: int = 0, max_frames: int = 0):
        """The frames of camera ``index`` (OpenCV's device numbering) as they come, until
        ``max_frames`` (0: until the camera stops or the process is interrupted).

        Raises:
            IOError: OpenCV cannot open the camera or reads no frame from it.
        """
        cv2 = _cv2()
        cap = cv2.VideoCapture(int(index))
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            cap.release()
            raise IOError(f"OpenCV cannot open the camera {index} (or it gives no frame)")
        stream = cls([frame[..., ::-1].copy()])
        rate = cap.get(cv2.CAP_PROP_FPS)
        stream.fps = float(rate) if rate and 0 < rate < 1000 else 25.0
        stream.name = f"camera{index}"
        stream.num_frames = int(max_frames) if max_frames > 0 else 10**9
        stream._camera = (cap, frame[..., ::-1].copy(), int(max_frames))
        return stream

    def __repr__(self):
        return (
            f"VideoStream({self.path or self.name!r}, frames={self.num_frames}, "
            f"size={self.height}x{self.width}, fps={self.fps:.2f})"
        )

    def _read_image(self, name):
        return _read_image(os.path.join(self.path, name))[..., ::-1]

    def _check(self, frame, i):
        if frame.shape[:2] != (self.height, self.width):
            where = self.path or "the frames given"
            raise IOError(
                f"Frame {i + 1} of {where} is {frame.shape[0]}x{frame.shape[1]} (HxW); the first "
                f"is {self.height}x{self.width}"
            )
        return np.ascontiguousarray(frame)

    def __iter__(self):
        self.frames_read = 0
        if getattr(self, "_camera", None) is not None:
            yield from self._camera_frames()
            return
        if self._frames is not None:
            source = (np.asarray(f) for f in self._frames)
        elif self._files is not None:
            source = (self._read_image(f) for f in self._files)
        else:
            source = self._decode()
        for i, frame in enumerate(source):
            yield self._check(frame, i)
            self.frames_read = i + 1
        if self._files is None and self._frames is None:
            check_decoded_length(self.path, self.num_frames, self.frames_read)

    def _camera_frames(self):
        cap, first, limit = self._camera
        frame = first
        try:
            while frame is not None and (limit <= 0 or self.frames_read < limit):
                yield self._check(frame, self.frames_read)
                self.frames_read += 1
                ok, bgr = cap.read()
                frame = bgr[..., ::-1] if ok else None
        finally:
            cap.release()

    def _decode(self):
        cap = _cv2().VideoCapture(self.path)
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield frame[..., ::-1]
        finally:
            cap.release()


# x264's speed preset of the written videos: "superfast" encodes 132 720p frames in 0.94 s against
# "veryfast"'s 1.23 (the demo's largest stage), in a file 1.6x larger at the same quality target
# (CRF 20); "ultrafast" 0.60 s at 4.1x the size (BENCHMARKS.md, "The second round").
X264_PRESET = "superfast"


class VideoWriter:
    """An mp4 that browsers, notebooks and players play: H.264 (``yuv420p``, ``+faststart``)
    through PyAV, whose wheels bundle FFmpeg with libx264; OpenCV's ``mp4v`` only when PyAV or
    its H.264 encoder is missing (with a warning).

    ``write(frame)`` takes uint8 ``(H, W, 3)`` RGB frames of the size given; ``close()`` finishes
    the file.  H.264 in ``yuv420p`` needs even sides: an odd side is padded with one repeated row or
    column of pixels.  ``codec`` says which encoder writes (``"h264"`` or ``"mp4v"``).

    Raises:
        OSError: the file cannot be opened or written (a full disk, a read-only folder).
    """

    def __init__(
        self,
        path: str,
        fps: float,
        width: int,
        height: int,
        name: str = "",
        preset: str = X264_PRESET,
    ):
        """``name``: what messages call the file (default ``path``; e.g. the final name of a
        temporary file).  ``preset``: x264's speed preset (``X264_PRESET``)."""
        from fractions import Fraction

        self.path, self.width, self.height = os.fspath(path), int(width), int(height)
        self.name = name or self.path
        self.frames = 0
        self._container = self._stream = self._cv = None
        try:
            import av

            av.codec.Codec("libx264", "w")
        except Exception as e:  # noqa: BLE001 - PyAV or its libx264 missing
            logger.warning("PyAV's H.264 encoder is not available (%s): writing mp4v", e)
            cv2 = _cv2()
            self._cv = cv2.VideoWriter(
                self.path, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (self.width, self.height)
            )
            if not self._cv.isOpened():
                raise OSError(f"OpenCV cannot write the video {self.name} (mp4v codec)")
            self.codec = "mp4v"
            return
        with self._ffmpeg_errors():
            self._container = av.open(
                self.path, "w", format="mp4", options={"movflags": "+faststart"}
            )
            self._stream = self._container.add_stream(
                "libx264", rate=Fraction(float(fps)).limit_denominator(100000)
            )
        self._stream.width, self._stream.height = (
            self.width + self.width % 2,
            self.height + self.height % 2,
        )
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": "20", "preset": preset}
        # x264's frame threads (several frames in flight) rather than FFmpeg's default slices:
        # the same stream format, more of the cores busy (BENCHMARKS.md, "Speed levers").
        self._stream.codec_context.thread_type = "AUTO"
        self.codec = "h264"

    def write(self, frame_rgb: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame_rgb)
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"VideoWriter({self.name}): frames are uint8 ({self.height}, {self.width}, 3), got "
                f"{frame.dtype} {frame.shape}"
            )
        if self._cv is not None:
            self._cv.write(frame[..., ::-1].copy())
        else:
            import av

            if self.width % 2 or self.height % 2:
                frame = np.pad(
                    frame, ((0, self.height % 2), (0, self.width % 2), (0, 0)), mode="edge"
                )
            with self._ffmpeg_errors():
                for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, "rgb24")):
                    self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._cv is not None:
            self._cv.release()
            self._cv = None
        if self._container is not None:
            container, self._container = self._container, None
            with self._ffmpeg_errors():
                try:
                    for packet in self._stream.encode(None):  # the encoder's last frames
                        container.mux(packet)
                finally:
                    container.close()

    @contextmanager
    def _ffmpeg_errors(self):
        """FFmpeg's errors (a full disk, a folder that cannot be written) as ``OSError`` naming
        the video."""
        import av

        try:
            yield
        except av.error.FFmpegError as e:
            raise OSError(f"Cannot write the video {self.name}: {e} (is the disk full?)") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
