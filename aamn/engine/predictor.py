"""Inference on any video: a sentence segmented in every frame (detectron2's ``DefaultPredictor``
for referring-video models).

``VideoPredictor(cfg)`` builds any of the project's models from a config and ``MODEL.WEIGHTS``
alone (the checkpoint carries its vocabulary) and runs it on a video file, a folder of frames or
frames in memory (``aamn.data.video.VideoStream``), with one or more queries:

* optical flow is computed on the fly (``INPUT.FLOW.METHOD``) and passed through the flow
  cache's quantisation (``INPUT.FLOW.BOUND``), so the model sees the flow it was trained on;
* proposals (models with ``INPUT.CLIP.LOAD_PROPOSALS``, i.e. AAMN) come from a detectron2
  detector run on each frame (``ProposalDetector``: any detector config + weights, e.g. the
  project's ``configs/synthetic/detector.yaml`` or a COCO model-zoo Faster R-CNN) or from a
  proposal file in detectron2's format;
* a model that segments its whole clip (AAMN: ``segments_whole_clip``) steps through the video
  clip by clip, ``2L+1`` frames per forward pass, and each clip's tube is linked to the previous
  clip's (``TEST.VIDEO.LINK_WEIGHT``, ``AAMN.select_tubes``) so the referred actor stays the same
  across clip boundaries; a model that predicts its key frame (the comparison systems, or AAMN
  with ``TEST.VIDEO.STEP "frame"``) runs one clip per frame, ``TEST.VIDEO.BATCH_SIZE`` clips per
  pass;
* the queries of a clip share one backbone pass (``TwoStreamModel.stream_features``);
* frames are decoded, and flow and proposals computed, as the clips need them and dropped after:
  memory is bounded by the clip, not by the video's length.

Usage::

    predictor = VideoPredictor(cfg, detector=ProposalDetector(detector_cfg))
    for frame in predictor(video_path, ["man in black jumping", "dog on the left"]):
        frame["index"], frame["image"], frame["queries"][0]["mask"], ...

Each item (one per input frame, in order) is a dict: ``index`` (0-based), ``image`` uint8
``(H, W, 3)`` RGB, ``queries``: one dict per query with ``mask`` bool ``(H, W)``, ``box``
float ``(4,)`` XYXY, ``score`` float, and, for AAMN, ``clip`` (the clip's number), ``tube_index``,
``united_tubes`` (the tubes whose masks make the prediction: the selected one, or with
``MODEL.AAMN.TUBE_UNION_MARGIN`` every tube within the margin), ``tube_boxes`` ``(T, 4)`` of the
clip's selected tube (the box around the united tubes'), ``all_tube_boxes`` ``(K, T, 4)``,
``clip_frames`` (the clip's 0-based frame numbers), ``word_attention`` ``{"actor", "action"}``
over ``tokens``.
"""

import logging
import os
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from detectron2.data import transforms as T

from ..config import check_choice, check_device, check_weights
from ..data.dataset_mappers import ClipDatasetMapper
from ..data.flow import compute_flow, dequantize_flow, quantize_flow
from ..data.proposals import get_proposals, pad_proposals, proposal_id
from ..data.text import query_words, tokenize
from ..data.video import VideoStream
from ..modeling.checkpoint import build_trained_model
from ..utils.masks import mask_to_rle
from .proposal_detector import PROPOSAL_DETECTOR_KEY, ProposalDetector, build_proposal_detector

__all__ = [
    "ProposalDetector",
    "VideoPredictor",
    "QueryError",
    "build_proposal_detector",
    "result_record",
]

logger = logging.getLogger(__name__)

# The smallest frame side the predictor accepts (optical flow and the drawing need a few pixels).
MIN_SIDE = 16


class QueryError(ValueError):
    """A query that cannot be segmented: empty, or without one word of the model's vocabulary."""


@contextmanager
def _timed(timings, stage: str):
    """Add the seconds of the block to ``timings[stage]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] += time.perf_counter() - start


class _FrameWindow:
    """The frames of a stream with their flow and proposals, read as far ahead as a clip needs
    (one frame beyond it, for the flow) and dropped once no later clip needs them.

    ``working_size`` ``(h, w)``: each decoded frame is resized to it once (the size the model
    sees); flow, proposals and the model's inputs are computed from those frames, and
    ``originals`` keeps the decoded frames for the output."""

    def __init__(self, stream: VideoStream, flow_fn, proposal_fn, working_size=None, timings=None):
        self._iter = iter(stream)
        self.count, self.ended = 0, False
        self.frames: Dict[int, np.ndarray] = {}
        self.originals: Dict[int, np.ndarray] = {}
        self.flow: Dict[int, np.ndarray] = {}
        self.proposals: Dict[int, tuple] = {}
        self._flow_fn, self._proposal_fn = flow_fn, proposal_fn
        self.working_size = working_size
        self.timings = timings if timings is not None else defaultdict(float)

    def _read_until(self, i: int) -> None:
        while not self.ended and self.count <= i:
            try:
                with _timed(self.timings, "decode"):
                    frame = next(self._iter)
            except StopIteration:
                self.ended = True
                continue
            self.originals[self.count] = frame
            if self.working_size is not None:
                import cv2

                with _timed(self.timings, "resize"):
                    h, w = self.working_size
                    frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
            self.frames[self.count] = frame
            self.count += 1

    def has(self, i: int) -> bool:
        self._read_until(i)
        return i < self.count

    def _flow(self, i: int) -> np.ndarray:
        if i not in self.flow:
            if self.count == 1:  # a one-frame video has zero flow (the flow cache's rule)
                self.flow[i] = np.zeros(self.frames[0].shape[:2] + (3,), np.float32)
            elif i + 1 < self.count:
                with _timed(self.timings, "flow"):
                    self.flow[i] = self._flow_fn(self.frames[i], self.frames[i + 1])
            else:  # the last frame repeats the previous flow (the flow cache's rule)
                self.flow[i] = self._flow(i - 1)
        return self.flow[i]

    def clip(self, indices: Sequence[int]):
        """The clip of 0-based ``indices`` (clamped to the video): its frame numbers, frames
        ``(T, H, W, 3)`` RGB, flow ``(T, H, W, 3)`` or None, proposals or None."""
        self._read_until(max(indices) + 1)
        idx = [min(max(i, 0), self.count - 1) for i in indices]
        frames = np.stack([self.frames[i] for i in idx])
        flow = np.stack([self._flow(i) for i in idx]) if self._flow_fn else None
        proposals = None
        if self._proposal_fn is not None:
            self.detect(idx)
            proposals = [self.proposals[i] for i in idx]
        return idx, frames, flow, proposals

    def detect(self, indices: Sequence[int]) -> None:
        """The proposals of the frames ``indices`` (read, clamped to the video) that have none
        yet, in one call of the proposal function (one detector batch)."""
        if self._proposal_fn is None:
            return
        self._read_until(max(indices))
        todo = sorted({min(max(i, 0), self.count - 1) for i in indices} - set(self.proposals))
        if todo:
            with _timed(self.timings, "proposals"):
                found = self._proposal_fn(todo, [self.frames[i] for i in todo])
            for i, p in zip(todo, found):
                self.proposals[i] = p

    def drop_before(self, i: int) -> None:
        for store in (self.frames, self.originals, self.flow, self.proposals):
            for k in [k for k in store if k < i]:
                del store[k]


class VideoPredictor:
    """A referring-video model on whole videos (see the module docstring)."""

    def __init__(
        self,
        cfg,
        detector: Optional[ProposalDetector] = None,
        proposal_file: Optional[str] = None,
        video_id: Optional[str] = None,
        detector_config: str = "",
        detector_weights: str = "",
        flow_fn: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None,
    ):
        """
        Args:
            cfg: the model's config; ``MODEL.WEIGHTS`` must name its trained checkpoint.
            detector: makes the proposals of a model that needs them.
            proposal_file: or read them from this file (detectron2's format, ids
                ``"<video_id>/<frame:05d>"``, 1-based frames);
            video_id: the video's id in ``proposal_file`` (default: the video's file name
                without extension).
            detector_config, detector_weights: without ``detector`` and ``proposal_file``, the
                proposal detector the checkpoint records is built (``build_proposal_detector``);
                these override its config file and its weights.
            flow_fn: ``flow_fn(frame_a, frame_b)`` -> float32 ``(H, W, 3)`` flow of two uint8 RGB
                frames, for a model that reads flow (default ``cache_flow``).

        Raises:
            FileNotFoundError: ``MODEL.WEIGHTS`` is empty or names no file.
            ValueError: the model needs proposals and neither a detector nor a file is given.
        """
        # The config is read in one place, in order: its checks, the trained model (vocabulary,
        # weights), the clips' mapper, the proposal detector.
        check_weights(cfg, f"a trained {cfg.MODEL.META_ARCHITECTURE} checkpoint")
        check_device(cfg)
        step = cfg.TEST.VIDEO.STEP
        check_choice("TEST.VIDEO.STEP", step, ("clip", "frame"))
        self.cfg = cfg.clone()
        self.model, extra, self.vocabulary = build_trained_model(self.cfg)
        self.mapper = ClipDatasetMapper(self.cfg, is_train=False)
        self.half_length = self.cfg.INPUT.CLIP.HALF_LENGTH
        self.whole_clip = step == "clip" and bool(getattr(self.model, "segments_whole_clip", False))
        self.batch_size = max(1, int(self.cfg.TEST.VIDEO.BATCH_SIZE))
        # The mapper's choice (reads_proposal_files): a model with the shared detector finds its
        # own proposals.
        self.needs_proposals = self.mapper.load_proposals
        if self.needs_proposals and detector is None and not proposal_file:
            # AAMN links proposals into tubes: the detector its checkpoint names, or the flags'
            detector = build_proposal_detector(
                extra.get(PROPOSAL_DETECTOR_KEY),
                detector_config,
                detector_weights,
                source=self.cfg.MODEL.WEIGHTS,
            )
        if proposal_file and not os.path.isfile(proposal_file):
            raise FileNotFoundError(f"Proposal file not found: {proposal_file}")
        self.detector, self.proposal_file, self.video_id = detector, proposal_file, video_id
        self.flow_fn = flow_fn or self.cache_flow
        self.timings = defaultdict(float)  # seconds per stage of the last video

    # ------------------------------------------------------------------ queries
    def query_inputs(self, queries: Sequence[str]) -> List[Dict]:
        """``{"query", "query_tokens"}`` of each query, checked against the model's vocabulary.

        Raises:
            QueryError: a query that is empty or has no word of the vocabulary.
        Logs a warning naming the words of a query that the vocabulary does not have (they are
        read as ``<unk>``).
        """
        if isinstance(queries, str):
            queries = [queries]
        if not queries:
            raise QueryError("No query given")
        out = []
        limit = self.mapper.query_max_length
        for q in queries:
            x = self.mapper.query_input(str(q))
            words = query_words(x["query_tokens"])
            tokens = tokenize(str(q))
            all_words = query_words(tokens)
            if not all_words:
                raise QueryError(f"The query {q!r} is empty (it has no word)")
            if len(tokens) > limit:
                logger.warning(
                    "Query %r has %d tokens; the model reads the first %d "
                    "(INPUT.QUERY_MAX_LENGTH): %r is left out",
                    q,
                    len(tokens),
                    limit,
                    " ".join(tokens[limit:]),
                )
            if self.vocabulary is not None:
                unknown = self._unknown(words)
                if len(unknown) == len(set(words)):
                    known_later = [w for w in all_words[len(words) :] if w in self.vocabulary]
                    raise QueryError(
                        f"No word of the query {q!r} is in the model's vocabulary "
                        f"({len(self.vocabulary)} words): nothing to ground; the nearest known "
                        f"words: {', '.join(self.nearest_known_words(unknown))}"
                        if not known_later
                        else f"No word among the first {limit} tokens of the query {q!r} "
                        f"(INPUT.QUERY_MAX_LENGTH) is in the model's vocabulary; its known "
                        f"words {known_later} lie beyond them: shorten the query"
                    )
                if unknown:
                    logger.warning(
                        "Query %r: the words %s are not in the model's vocabulary and are read as "
                        "<unk>",
                        q,
                        unknown,
                    )
            out.append(x)
        return out

    def unknown_words(self, query: str) -> List[str]:
        """The words of ``query`` (as the model reads it) that the model's vocabulary lacks: they
        are read as ``<unk>``."""
        return self._unknown(query_words(self.mapper.query_input(str(query))["query_tokens"]))

    def known_words(self) -> List[str]:
        """The words the model's vocabulary holds (its special tokens left out), most frequent in
        its training queries first ([] without a vocabulary)."""
        if self.vocabulary is None:
            return []
        return [w for w in self.vocabulary.words if w not in ("<pad>", "<unk>")]

    def nearest_known_words(self, words: Sequence[str], n: int = 8) -> List[str]:
        """Known words closest in spelling to ``words`` (``difflib``), at most ``n``; the most
        frequent known words when none is close."""
        import difflib

        known = self.known_words()
        near: List[str] = []
        for word in words:
            for w in difflib.get_close_matches(word, known, n=3, cutoff=0.6):
                if w not in near:
                    near.append(w)
        return (near or known)[:n]

    def _unknown(self, words: Sequence[str]) -> List[str]:
        """The distinct ``words`` the model's vocabulary lacks, sorted ([] without one)."""
        if self.vocabulary is None:
            return []
        return sorted({t for t in words if t not in self.vocabulary})

    # ------------------------------------------------------------------ the video's checks
    def check_video(self, stream: VideoStream) -> None:
        """What can be known before the first frame: the frames are at least ``MIN_SIDE`` pixels
        on each side, and a proposal file holds every frame of the video.

        Raises:
            ValueError: naming the video (its size) or the proposal file (the missing frames).
        """
        where = stream.path or stream.name
        if min(stream.height, stream.width) < MIN_SIDE:
            raise ValueError(
                f"The video {where} is {stream.height}x{stream.width} (HxW); frames of at least "
                f"{MIN_SIDE}x{MIN_SIDE} pixels are needed"
            )
        if self.needs_proposals and self.detector is None:
            video_id = self.video_id or stream.name
            held = get_proposals(self.proposal_file)
            missing = [
                i for i in range(1, stream.num_frames + 1) if proposal_id(video_id, i) not in held
            ]
            if missing:
                hint = (
                    "it holds no frame of this id: give the video's id in the file with --video-id"
                    if len(missing) == stream.num_frames
                    else "it must hold every frame of the video"
                )
                raise ValueError(
                    f"The proposal file {self.proposal_file} lacks {len(missing)} of the "
                    f"{stream.num_frames} frames of video {video_id!r} (ids "
                    f"'{proposal_id(video_id, missing[0])}'"
                    + (f" .. '{proposal_id(video_id, missing[-1])}'" if len(missing) > 1 else "")
                    + f"): {hint}"
                )

    # ------------------------------------------------------------------ per-frame inputs
    def cache_flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The flow ``a -> b`` (uint8 RGB frames ``(H, W, 3)``) as the model was trained on it:
        ``INPUT.FLOW.METHOD``, quantised and read back with ``INPUT.FLOW.BOUND`` like the flow
        cache -> float32 ``(H, W, 3)`` (x, y, magnitude).  The default ``flow_fn``."""
        bound = self.cfg.INPUT.FLOW.BOUND
        flow = compute_flow(np.stack([a, b]), method=self.cfg.INPUT.FLOW.METHOD)[0]
        return dequantize_flow(quantize_flow(flow, bound), bound)

    def _proposal_fn(self, stream: VideoStream, working_size=None):
        """Proposals of frames at ``working_size`` ``(h, w)`` (default: the video's size): the
        detector's on those frames, or the file's (in the video's pixels) scaled to them."""
        k = self.cfg.INPUT.CLIP.NUM_PROPOSALS
        h, w = working_size or (stream.height, stream.width)
        scale = np.array([w / stream.width, h / stream.height] * 2, np.float32)
        if self.detector is not None:

            def detect(indices, frames):
                return [pad_proposals(b, s, k, h, w) for b, s in self.detector(np.stack(frames))]

            return detect
        video_id = self.video_id or stream.name

        def read(indices, frames):
            try:
                boxes, scores = self.mapper.frame_proposals(
                    self.proposal_file,
                    video_id,
                    [i + 1 for i in indices],
                    stream.height,
                    stream.width,
                )
            except KeyError as e:
                raise KeyError(
                    f"{e.args[0]} (its ids are '<video_id>/<frame:05d>'; give the video's id "
                    "with --video-id)"
                ) from None
            return list(zip(boxes * scale, scores))

        return read

    def working_size(self, stream: VideoStream):
        """``(h, w)`` the model's test-time resize gives the video's frames when it shrinks them
        (a high-definition video), else None: decoded frames are resized to it once, and flow,
        proposals and the model run at that size; masks and boxes come back at the video's."""
        if not self.cfg.TEST.VIDEO.RESIZE_FIRST:
            return None
        probe = T.AugInput(np.zeros((stream.height, stream.width, 3), np.uint8))
        self.mapper.augmentations(probe)
        h, w = probe.image.shape[:2]
        return (h, w) if h * w < stream.height * stream.width else None

    def _clip_input(self, stream: VideoStream, clip) -> Dict:
        _, frames, flow, proposals = clip
        if self.mapper.image_format == "BGR":
            frames = frames[..., ::-1]
        boxes = scores = None
        if proposals is not None:
            boxes = np.stack([b for b, _ in proposals])
            scores = np.stack([s for _, s in proposals])
        x, _ = self.mapper.augment_clip(np.ascontiguousarray(frames), flow, boxes, scores)
        x["height"], x["width"] = stream.height, stream.width
        return x

    # ------------------------------------------------------------------ the video
    def __call__(self, video, queries, progress: bool = False) -> Iterator[Dict]:
        """Segment ``queries`` in every frame of ``video``; yields one dict per frame, in order
        (see the module docstring).

        Args:
            video: a video file, a folder of frames, frames in memory, or a ``VideoStream``.
            queries: a str or a list of str.
            progress: show a progress bar (frames).
        """
        qinputs = self.query_inputs(queries)  # checked before any frame is decoded
        stream = video if isinstance(video, VideoStream) else VideoStream(video)
        self.check_video(stream)
        size = self.working_size(stream)
        self.timings = defaultdict(float)  # seconds per stage of this video (tools/demo.py)
        window = _FrameWindow(
            stream,
            self.flow_fn if self.mapper.use_flow else None,
            self._proposal_fn(stream, size) if self.needs_proposals else None,
            working_size=size,
            timings=self.timings,
        )
        bar = None
        if progress:
            import tqdm

            bar = tqdm.tqdm(total=stream.num_frames, unit="frame", desc=stream.name)
        steps = self._whole_clips if self.whole_clip else self._key_frames
        try:
            with torch.no_grad():
                for item in steps(stream, window, qinputs):
                    if bar is not None:
                        bar.update(1)
                    yield item
        finally:
            if bar is not None:
                bar.close()

    def predict(self, video, queries, keep_images: bool = False) -> List[Dict]:
        """``list(self(video, queries))``, without the frames unless ``keep_images``."""
        out = []
        for item in self(video, queries):
            if not keep_images:
                item.pop("image")
            out.append(item)
        return out

    def _whole_clips(self, stream, window: _FrameWindow, qinputs) -> Iterator[Dict]:
        """AAMN: clip ``c`` holds frames ``cT .. cT+T-1`` (``T = 2L+1``; the last clip repeats the
        video's last frame); every frame of it gets its mask from this one pass.

        ``TEST.VIDEO.BATCH_SIZE`` clips (each with every query) go through the model at once, as
        the key-frame models' clips do; with ``TEST.VIDEO.LINK_WEIGHT`` > 0 a clip's selection
        needs the previous clip's tube, so the clips go one at a time."""
        T = 2 * self.half_length + 1
        per_pass = 1 if float(getattr(self.model, "link_weight", 0.0)) > 0 else self.batch_size
        previous = [None] * len(qinputs)
        c = 0
        while window.has(c * T):
            starts = [(c + n) * T for n in range(per_pass) if window.has((c + n) * T)]
            window.detect([i for s in starts for i in range(s, s + T)])  # one detector batch
            clips = []
            for start in starts:
                clip = window.clip(list(range(start, start + T)))
                with _timed(self.timings, "inputs"):
                    clips.append((start, clip, self._clip_input(stream, clip)))
            batch = [
                {**x, **q, **({"previous_box": p} if p is not None else {})}
                for _, _, x in clips
                for q, p in zip(qinputs, previous)
            ]
            with _timed(self.timings, "model"):
                outputs = self.model(batch)
            for n, (start, clip, _) in enumerate(clips):
                outs = outputs[n * len(qinputs) : (n + 1) * len(qinputs)]
                for t in [t for t in range(T) if start + t < window.count]:
                    yield {
                        "index": start + t,
                        "image": window.originals[start + t],
                        "queries": [
                            _clip_frame_result(o, q, t, c + n, clip[0])
                            for o, q in zip(outs, qinputs)
                        ],
                    }
                previous = [o["tube_boxes"][-1] for o in outs]
            window.drop_before(clips[-1][0] + T - 1)
            c += len(clips)

    def _key_frames(self, stream, window: _FrameWindow, qinputs) -> Iterator[Dict]:
        """A key-frame model: frame ``i`` is the key frame of its clip ``i-L .. i+L``;
        ``TEST.VIDEO.BATCH_SIZE`` clips (each with every query) per pass."""
        L = self.half_length
        i = 0
        while window.has(i):
            keys = [j for j in range(i, i + self.batch_size) if window.has(j)]
            batch = []
            for j in keys:
                clip = window.clip(list(range(j - L, j + L + 1)))
                with _timed(self.timings, "inputs"):
                    x = self._clip_input(stream, clip)
                batch.extend({**x, **q} for q in qinputs)
            with _timed(self.timings, "model"):
                outputs = self.model(batch)
            for n, j in enumerate(keys):
                outs = outputs[n * len(qinputs) : (n + 1) * len(qinputs)]
                yield {
                    "index": j,
                    "image": window.originals[j],
                    "queries": [_instance_result(o["instances"], q) for o, q in zip(outs, qinputs)],
                }
            i = keys[-1] + 1
            window.drop_before(i - L - 1)  # frame i-L-1 still gives the last frame's flow


def _instance_result(inst, query: Dict) -> Dict:
    """One frame's result of one query: mask, box, score (``prediction_instance``'s fields)."""
    inst = inst.to("cpu")
    return {
        "query": query["query"],
        "tokens": list(query["query_tokens"]),
        "mask": inst.pred_masks[0].numpy().astype(bool),
        "box": inst.pred_boxes.tensor[0].numpy().astype(np.float32),
        "score": float(inst.scores[0]),
    }


def _clip_frame_result(output: Dict, query: Dict, t: int, clip: int, clip_frames) -> Dict:
    """Frame ``t`` of a clip output of AAMN, with its tube and word attention."""
    out = _instance_result(output["clip_instances"][t], query)
    out.update(
        {
            "clip": clip,
            "clip_frames": list(clip_frames),
            "tube_index": int(output["tube_index"]),
            "united_tubes": list(output.get("united_tubes", [int(output["tube_index"])])),
            "tube_boxes": output["tube_boxes"].cpu().numpy(),
            "all_tube_boxes": output["all_tube_boxes"].cpu().numpy(),
            "tube_scores": output["tube_scores"].cpu().numpy(),
            "word_attention": {
                k: v.cpu().numpy() for k, v in output.get("word_attention", {}).items()
            },
        }
    )
    return out


def result_record(result: Dict) -> Dict:
    """One frame's result of one query as JSON data (what the demo, ``tools/infer.py`` and the
    page write): ``query``, ``score``, ``box`` XYXY, ``segmentation`` (COCO RLE) and, for AAMN,
    ``clip``, ``tube_index`` and ``tube_boxes`` ``(T, 4)``."""
    out = {
        "query": result["query"],
        "score": round(float(result["score"]), 5),
        "box": [round(float(v), 2) for v in result["box"]],
        "segmentation": mask_to_rle(result["mask"]),
    }
    if "tube_index" in result:
        out["clip"], out["tube_index"] = int(result["clip"]), int(result["tube_index"])
        if result.get("united_tubes", [out["tube_index"]]) != [out["tube_index"]]:
            out["united_tubes"] = [int(k) for k in result["united_tubes"]]
        out["tube_boxes"] = np.round(np.asarray(result["tube_boxes"], np.float64), 2).tolist()
    return out
