"""Dataset mappers: clips for AAMN, single video frames for the proposal detector.

``ClipDatasetMapper`` turns one record of the record contract (a query and an annotated frame) into
the clip AAMN consumes: the ``T = 2L+1`` RGB frames centred on the annotated frame (edge frames
repeated at the video's ends), the matching flow frames, ``K`` proposals per frame, the tokenized
query and the key frame's targets.  One augmentation (detectron2's ``T.AugmentationList``, drawn on
the key frame) is applied identically to every frame, the flow, the boxes and the masks:

- resize: frames and flow are resampled (area interpolation when shrinking, bilinear when
  enlarging), masks with nearest neighbour; flow x is scaled by the x factor, flow y by the y
  factor;
- horizontal flip: flow x is negated and the words "left" / "right" of the query are swapped
  (``INPUT.FLIP_SWAPS_LEFT_RIGHT``); vertical flip negates flow y;
- the flow magnitude channel is recomputed from the augmented x, y.

``VideoFrameDatasetMapper`` is detectron2's ``DatasetMapper`` reading the image from frame
``frame_idx`` of the video ``file_name`` (the ``*_frames`` data sets).
"""

import copy
import logging
import os
import threading

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BitMasks, Boxes, BoxMode, Instances

from ..flow import read_flow
from ..proposals import (
    reads_proposal_files,
    PREPARE_COMMAND,
    check_boxes_in_frame,
    get_proposals,
    pad_proposals,
    proposal_id,
)
from ..text import swap_left_right, tokenize
from ..video import VideoReader

__all__ = [
    "ClipDatasetMapper",
    "VideoFrameDatasetMapper",
    "build_clip_augmentation",
    "apply_transforms_to_stack",
    "transform_flow",
]

logger = logging.getLogger(__name__)

_PIL_TO_CV2 = {0: "INTER_NEAREST", 2: "INTER_LINEAR", 3: "INTER_CUBIC", 1: "INTER_LANCZOS4"}
_warned = set()
_warn_lock = threading.Lock()


def _warn_once(key, msg, *args):
    with _warn_lock:
        if key in _warned:
            return
        _warned.add(key)
    logger.warning(msg, *args)


def apply_transforms_to_stack(transforms, arr, nearest=False):
    """Apply a detectron2 ``TransformList`` to a stack of images sharing one geometry.

    Args:
        transforms: ``T.TransformList`` (or a list of ``T.Transform``).
        arr: ``(H, W, C)`` array, any number of channels (frames, flow or masks stacked on C).
        nearest: nearest-neighbour resampling (masks); otherwise area interpolation when
            shrinking and the transform's interpolation when enlarging.

    Returns:
        ``(h, w, C)`` array of the same dtype.

    Resize, flips, crops and no-ops run on the whole stack at once (OpenCV); any other transform
    is applied channel by channel with its own ``apply_image`` / ``apply_segmentation``.
    """
    import cv2

    tlist = transforms.transforms if isinstance(transforms, T.TransformList) else list(transforms)
    c = arr.shape[2]
    for t in tlist:
        if isinstance(t, T.NoOpTransform):
            continue
        if isinstance(t, T.ResizeTransform):
            if (t.h, t.w) != arr.shape[:2]:
                raise ValueError(
                    f"ResizeTransform expects a {t.h}x{t.w} input, got "
                    f"{arr.shape[0]}x{arr.shape[1]}"
                )
            if nearest:
                interp = cv2.INTER_NEAREST
            elif t.new_h * t.new_w < t.h * t.w:
                interp = cv2.INTER_AREA
            else:
                interp = getattr(cv2, _PIL_TO_CV2.get(int(t.interp), "INTER_LINEAR"))
            # OpenCV resizes at most 512 channels at once, and at most 4 with INTER_AREA at a
            # non-integer factor.
            step = 4 if interp == cv2.INTER_AREA else 512
            chunks = []
            for s in range(0, c, step):
                part = cv2.resize(
                    np.ascontiguousarray(arr[:, :, s : s + step]),
                    (t.new_w, t.new_h),
                    interpolation=interp,
                )
                chunks.append(part.reshape(t.new_h, t.new_w, -1))
            arr = chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=2)
        elif isinstance(t, T.HFlipTransform):
            arr = arr[:, ::-1]
        elif isinstance(t, T.VFlipTransform):
            arr = arr[::-1]
        elif isinstance(t, T.CropTransform):
            arr = arr[t.y0 : t.y0 + t.h, t.x0 : t.x0 + t.w]
        else:
            fn = t.apply_segmentation if nearest else t.apply_image
            arr = np.stack([fn(np.ascontiguousarray(arr[:, :, k])) for k in range(c)], axis=2)
    return np.ascontiguousarray(arr)


def transform_flow(transforms, flow):
    """Augment flow frames stacked as ``(H, W, 2T)`` (x, y interleaved) -> ``(h, w, 2T)``.

    The displacements follow the geometry: a resize scales x by ``new_w / w`` and y by
    ``new_h / h``; a horizontal flip negates x, a vertical flip negates y.
    """
    tlist = transforms.transforms if isinstance(transforms, T.TransformList) else list(transforms)
    sx = sy = 1.0
    for t in tlist:
        if isinstance(t, T.ResizeTransform):
            sx *= t.new_w / t.w
            sy *= t.new_h / t.h
        elif isinstance(t, T.HFlipTransform):
            sx = -sx
        elif isinstance(t, T.VFlipTransform):
            sy = -sy
        elif not isinstance(t, (T.NoOpTransform, T.CropTransform)):
            _warn_once(
                type(t),
                "Flow values are not adjusted for %s (only resize, flip and crop are handled)",
                type(t).__name__,
            )
    out = apply_transforms_to_stack(tlist, flow)
    if sx != 1.0:
        out[:, :, 0::2] *= np.float32(sx)
    if sy != 1.0:
        out[:, :, 1::2] *= np.float32(sy)
    return out


def _count_flips(transforms, kind):
    return sum(isinstance(t, kind) for t in transforms.transforms)


def _decode_masks(annos, height, width):
    """bool ``(N, H, W)`` of the annotations' COCO RLE (or polygon) segmentations."""
    from pycocotools import mask as mask_util

    out = np.zeros((len(annos), height, width), dtype=np.uint8)
    for k, a in enumerate(annos):
        segm = a.get("segmentation")
        if segm is None:
            continue
        if isinstance(segm, dict):
            rle = segm
            if isinstance(rle.get("counts"), list):
                rle = mask_util.frPyObjects(rle, height, width)
            m = mask_util.decode(rle)
        elif isinstance(segm, np.ndarray):
            m = segm
        else:  # polygons
            m = mask_util.decode(mask_util.merge(mask_util.frPyObjects(segm, height, width)))
        if m.shape[:2] != (height, width):
            raise ValueError(
                f"Mask of instance {a.get('instance_id')} is {m.shape[0]}x{m.shape[1]}, the frame "
                f"is {height}x{width}"
            )
        out[k] = m.reshape(height, width)
    return out


def build_clip_augmentation(cfg, is_train):
    """detectron2's ``build_augmentation`` (resize, and random flip in training), or with
    ``INPUT.FIXED_SIZE = S`` the longer side resized to ``S`` (``ResizeShortestEdge(S, S)``; the
    model pads to ``S x S``)."""
    size = int(cfg.INPUT.FIXED_SIZE)
    if size <= 0:
        return utils.build_augmentation(cfg, is_train)
    augs = [T.ResizeShortestEdge(size, size, "choice")]
    if is_train and cfg.INPUT.RANDOM_FLIP != "none":
        augs.append(
            T.RandomFlip(
                horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                vertical=cfg.INPUT.RANDOM_FLIP == "vertical",
            )
        )
    return augs


class ClipDatasetMapper:
    """Record (query, annotated frame) -> a referring-video model's clip input (docs/interfaces.md).

    ``__call__`` runs three steps a predictor can also call on frames already in memory:
    ``read_clip`` (frames, flow and proposals of the record's clip from disk), ``augment_clip``
    (one augmentation for frames, flow and boxes; returns the model input without targets) and
    ``build_targets`` (the key frame's ground truth under the same augmentation).

    Output dict (``T = 2L+1``, ``K`` proposals, ``(h, w)`` the augmented frame size):

    - ``image_id``, ``video_id``, ``frame_idx``, ``instance_id``, ``dataset_name``: from the record;
    - ``height``, ``width``: the original frame size;
    - ``query``: str (left / right swapped after a horizontal flip); ``query_tokens``: list[str],
      ``tokenize(query)`` cut to ``query_max_length``;
    - ``frame_indices``: LongTensor ``(T,)``, 1-based frame numbers (edge frames repeated);
    - ``image``: uint8 ``(T, 3, h, w)`` in ``image_format``;
    - ``flow``: float32 ``(T, 3, h, w)`` x, y (pixels of the augmented frame), magnitude (only
      with ``use_flow``);
    - ``proposal_boxes``: float32 ``(T, K, 4)`` XYXY in the augmented frame; ``proposal_scores``:
      float32 ``(T, K)`` objectness logits.  Fewer than K boxes: the last box is repeated with the
      frame's lowest score minus 1; no box: the full frame with score -1.  Only with
      ``load_proposals`` (a model that needs no proposals reads no proposal file);
    - ``instances``: ``Instances((h, w))`` of the key frame (index L): ``gt_boxes``, ``gt_masks``
      (BitMasks), ``gt_classes``, ``gt_instance_ids``; ``referred_idx``: int, the row of the
      referred instance.
    """

    @configurable
    def __init__(
        self,
        is_train,
        *,
        augmentations,
        image_format="BGR",
        half_length=4,
        num_proposals=6,
        use_flow=True,
        flow_dir="flow",
        flow_bound=20.0,
        flow_method=None,
        query_max_length=20,
        flip_swaps_left_right=True,
        proposal_files=None,
        load_proposals=True,
    ):
        """
        Args:
            is_train: training or inference.
            augmentations: list of ``T.Augmentation`` / ``T.Transform`` (drawn on the key frame,
                applied to the whole clip).
            image_format: ``"BGR"`` or ``"RGB"``.
            half_length: L; clips have ``2L+1`` frames.
            num_proposals: K, proposals per frame.
            use_flow: load the flow clip.
            flow_dir: the flow cache folder, relative to the data set's ``root`` (MetadataCatalog),
                or absolute.
            flow_bound: the quantisation bound of the flow cache (pixels).
            flow_method: the method the cache must have been computed with
                (``INPUT.FLOW.METHOD``); ``None``: any.
            query_max_length: the query is cut to this many tokens.
            flip_swaps_left_right: swap "left" / "right" in a horizontally flipped clip's query.
            proposal_files: dict data set name -> proposal file; a data set not in it uses its
                MetadataCatalog ``proposal_file``.
            load_proposals: read the proposals (``INPUT.CLIP.LOAD_PROPOSALS``).
        """
        if image_format not in ("BGR", "RGB"):
            raise ValueError(
                f"ClipDatasetMapper: INPUT.FORMAT must be 'BGR' or 'RGB', got {image_format!r}"
            )
        if half_length < 0 or num_proposals < 1:
            raise ValueError(
                f"ClipDatasetMapper: need L >= 0 and K >= 1, got L={half_length}, K={num_proposals}"
            )
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.half_length = int(half_length)
        self.num_proposals = int(num_proposals)
        self.use_flow = bool(use_flow)
        self.flow_dir = flow_dir
        self.flow_bound = float(flow_bound)
        self.flow_method = flow_method
        self.query_max_length = int(query_max_length)
        self.flip_swaps_left_right = bool(flip_swaps_left_right)
        self.proposal_files = dict(proposal_files or {})
        self.load_proposals = bool(load_proposals)
        self._dataset_paths = {}
        mode = "training" if is_train else "inference"
        logger.info(f"[ClipDatasetMapper] Augmentations used in {mode}: {augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train=True):
        names = list(cfg.DATASETS.TRAIN if is_train else cfg.DATASETS.TEST)
        files = list(
            cfg.DATASETS.PROPOSAL_FILES_TRAIN if is_train else cfg.DATASETS.PROPOSAL_FILES_TEST
        )
        if files and len(files) != len(names):
            key = "PROPOSAL_FILES_TRAIN" if is_train else "PROPOSAL_FILES_TEST"
            raise ValueError(
                f"DATASETS.{key} has {len(files)} files for {len(names)} data sets {names}: give "
                "one per data set, or none to use each data set's <root>/proposals/<name>.pkl"
            )
        return {
            "is_train": is_train,
            "augmentations": build_clip_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "half_length": cfg.INPUT.CLIP.HALF_LENGTH,
            "num_proposals": cfg.INPUT.CLIP.NUM_PROPOSALS,
            "use_flow": cfg.INPUT.FLOW.ENABLED,
            "flow_dir": cfg.INPUT.FLOW.DIR,
            "flow_bound": cfg.INPUT.FLOW.BOUND,
            "flow_method": cfg.INPUT.FLOW.METHOD,
            "query_max_length": cfg.INPUT.QUERY_MAX_LENGTH,
            "flip_swaps_left_right": cfg.INPUT.FLIP_SWAPS_LEFT_RIGHT,
            "proposal_files": dict(zip(names, files)),
            "load_proposals": reads_proposal_files(cfg, is_train),
        }

    # ------------------------------------------------------------------ per data set paths
    def _paths(self, dataset_name):
        """(proposal file, flow root) of a data set (cached)."""
        hit = self._dataset_paths.get(dataset_name)
        if hit is not None:
            return hit
        if dataset_name is None:
            raise ValueError(
                "ClipDatasetMapper: the record has no 'dataset_name'; register the data set with "
                "aamn.data.datasets (register_a2d_sentences / register_jhmdb_sentences)"
            )
        meta = MetadataCatalog.get(dataset_name)
        proposal_file = self.proposal_files.get(dataset_name) or meta.get("proposal_file", None)
        if self.load_proposals and not proposal_file:
            raise ValueError(
                f"No proposal file for data set {dataset_name!r}: set "
                "DATASETS.PROPOSAL_FILES_TRAIN/"
                f"TEST or the data set's MetadataCatalog 'proposal_file'"
            )
        root = meta.get("root", None)
        if os.path.isabs(self.flow_dir):
            flow_root = self.flow_dir
        elif root is not None:
            flow_root = os.path.join(root, self.flow_dir)
        else:
            flow_root = meta.get("flow_dir", None)
        hit = (proposal_file, flow_root)
        self._dataset_paths[dataset_name] = hit
        return hit

    # ------------------------------------------------------------------ pieces
    def _clip_indices(self, frame_idx, length):
        L = self.half_length
        return np.clip(np.arange(frame_idx - L, frame_idx + L + 1), 1, length).astype(np.int64)

    def frame_proposals(self, proposal_file, video_id, indices, height, width):
        """The ``K`` proposals of frames ``indices`` (1-based) of a video in a proposal file:
        float32 boxes ``(T, K, 4)`` and scores ``(T, K)`` in the original frame (``pad_proposals``).

        Raises:
            KeyError: a frame the file does not hold (the message names the frame's id).
        """
        data = get_proposals(proposal_file)
        K = self.num_proposals
        boxes = np.empty((len(indices), K, 4), np.float32)
        scores = np.empty((len(indices), K), np.float32)
        for t, i in enumerate(indices):
            pid = proposal_id(video_id, i)
            try:
                b, s = data[pid]
            except KeyError:
                raise KeyError(
                    f"No proposals for frame {pid} in {proposal_file}; it must hold every frame "
                    f"a clip of this config reads (INPUT.CLIP.HALF_LENGTH {self.half_length}): "
                    f"re-run `{PREPARE_COMMAND}` without --clip-half-length (every frame) or "
                    f"with --clip-half-length {self.half_length} or more"
                ) from None
            check_boxes_in_frame(b, height, width, f"{proposal_file}, frame {pid}")
            boxes[t], scores[t] = pad_proposals(b, s, K, height, width)
        return boxes, scores

    # ------------------------------------------------------------------ steps
    def read_clip(self, d):
        """Reading: the record's clip from disk (original frame size ``H x W``).

        Returns:
            dict with ``frame_indices`` int64 ``(T,)`` (1-based), ``frames`` uint8 ``(T, H, W, 3)``
            (``image_format``), ``flow`` float32 ``(T, H, W, 3)`` or None, ``proposal_boxes``
            float32 ``(T, K, 4)`` and ``proposal_scores`` ``(T, K)`` or None.
        """
        height, width = int(d["height"]), int(d["width"])
        proposal_file, flow_root = self._paths(d.get("dataset_name"))
        reader = VideoReader(d["file_name"])
        if (reader.height, reader.width) != (height, width):
            raise ValueError(
                f"{d['file_name']}: frames are {reader.height}x{reader.width} (HxW), the record "
                f"says {height}x{width}"
            )
        length = min(int(d.get("length", reader.num_frames)), reader.num_frames)
        indices = self._clip_indices(int(d["frame_idx"]), length)
        clip = {
            "frame_indices": indices,
            "frames": reader.read(indices, format=self.image_format),
            "flow": None,
        }
        if self.use_flow:
            if flow_root is None:
                raise ValueError(f"No flow folder for data set {d.get('dataset_name')!r}")
            flow = read_flow(
                os.path.join(flow_root, d["video_id"]), indices, self.flow_bound, self.flow_method
            )
            if flow.shape[1:3] != (height, width):
                raise ValueError(
                    f"Flow of {d['video_id']} in {flow_root} is {flow.shape[1]}x{flow.shape[2]}, "
                    f"the video is {height}x{width}: recompute it with "
                    "datasets/prepare_flow.py --overwrite"
                )
            clip["flow"] = flow
        clip["proposal_boxes"] = clip["proposal_scores"] = None
        if self.load_proposals:
            clip["proposal_boxes"], clip["proposal_scores"] = self.frame_proposals(
                proposal_file, d["video_id"], indices, height, width
            )
        return clip

    def augment_clip(
        self, frames, flow=None, proposal_boxes=None, proposal_scores=None, query=None
    ):
        """Augmenting: one augmentation, drawn on the key frame, for the whole clip.

        Args:
            frames: uint8 ``(T, H, W, 3)`` in ``image_format``.
            flow: float32 ``(T, H, W, >=2)`` (x, y[, magnitude]) or None.
            proposal_boxes: ``(T, K, 4)`` XYXY in the original frame, or None;
            proposal_scores: ``(T, K)`` or None.
            query: the query (str) or None.

        Returns:
            ``(model_input, transforms)``: ``model_input`` has ``image`` uint8 ``(T, 3, h, w)``,
            ``flow`` ``(T, 3, h, w)`` (when given), ``proposal_boxes`` / ``proposal_scores``
            (when given), ``query`` / ``query_tokens`` (when given); ``transforms`` is the
            ``TransformList`` applied (``build_targets`` takes it).
        """
        T_, height, width = frames.shape[:3]
        aug_input = T.AugInput(frames[T_ // 2])
        transforms = self.augmentations(aug_input)
        h, w = aug_input.image.shape[:2]
        stack = apply_transforms_to_stack(
            transforms, frames.transpose(1, 2, 0, 3).reshape(height, width, T_ * 3)
        )
        out = {
            "image": torch.from_numpy(
                np.ascontiguousarray(stack.reshape(h, w, T_, 3).transpose(2, 3, 0, 1))
            )
        }
        if flow is not None:
            fxy = flow[..., :2].transpose(1, 2, 0, 3).reshape(height, width, T_ * 2)
            fxy = transform_flow(transforms, fxy).reshape(h, w, T_, 2)
            mag = np.sqrt(np.square(fxy[..., 0]) + np.square(fxy[..., 1]))
            flow_out = np.concatenate([fxy, mag[..., None]], axis=3)  # (h, w, T, 3)
            out["flow"] = torch.from_numpy(np.ascontiguousarray(flow_out.transpose(2, 3, 0, 1)))
        if proposal_boxes is not None:
            K = proposal_boxes.shape[1]
            pb = transforms.apply_box(np.asarray(proposal_boxes, np.float64).reshape(-1, 4))
            pb = np.clip(pb, 0, [w, h, w, h]).astype(np.float32).reshape(T_, K, 4)
            out["proposal_boxes"] = torch.from_numpy(pb)
            out["proposal_scores"] = torch.from_numpy(np.asarray(proposal_scores, np.float32))
        if query is not None:
            flipped = _count_flips(transforms, T.HFlipTransform) % 2 == 1
            out.update(self.query_input(query, flipped))
        return out, transforms

    def query_input(self, query, flipped=False):
        """``{"query", "query_tokens"}`` of a query (``tokenize`` cut to ``query_max_length``);
        "left" / "right" swapped in a horizontally ``flipped`` clip (``flip_swaps_left_right``)."""
        if flipped and self.flip_swaps_left_right:
            query = swap_left_right(query)
        return {"query": query, "query_tokens": tokenize(query)[: self.query_max_length]}

    def build_targets(self, d, transforms, image_size):
        """Target building: the key frame's annotations under ``transforms``.

        Returns:
            ``(instances, referred_idx)``: ``Instances(image_size)`` with ``gt_boxes``,
            ``gt_masks``, ``gt_classes``, ``gt_instance_ids``, and the row of the referred one
            (at inference -1 when it is not in the frame: a J&F record of a frame it is absent
            from; a training record without it is an error).
        """
        height, width = int(d["height"]), int(d["width"])
        h, w = image_size
        annos = [a for a in d.get("annotations", []) if a.get("iscrowd", 0) == 0]
        masks = _decode_masks(annos, height, width)  # (N, H, W) uint8
        gt_boxes = np.array(
            [
                BoxMode.convert(
                    list(a["bbox"]), a.get("bbox_mode", BoxMode.XYXY_ABS), BoxMode.XYXY_ABS
                )
                for a in annos
            ],
            dtype=np.float64,
        ).reshape(-1, 4)
        instances = Instances((h, w))
        if len(annos):
            mstack = apply_transforms_to_stack(transforms, masks.transpose(1, 2, 0), nearest=True)
            mstack = mstack.reshape(h, w, len(annos)).transpose(2, 0, 1)
            gb = np.clip(transforms.apply_box(gt_boxes), 0, [w, h, w, h]).astype(np.float32)
        else:
            mstack = np.zeros((0, h, w), np.uint8)
            gb = np.zeros((0, 4), np.float32)
        instances.gt_boxes = Boxes(torch.from_numpy(gb))
        instances.gt_masks = BitMasks(torch.from_numpy(np.ascontiguousarray(mstack, dtype=bool)))
        instances.gt_classes = torch.tensor(
            [int(a.get("category_id", 0)) for a in annos], dtype=torch.int64
        )
        ids = [int(a.get("instance_id", -1)) for a in annos]
        instances.gt_instance_ids = torch.tensor(ids, dtype=torch.int64)
        if int(d["instance_id"]) not in ids:
            if not self.is_train:  # every frame of an expression (J&F): the object may be absent
                return instances, -1
            raise ValueError(
                f"Record {d['image_id']}: the referred instance {d['instance_id']} is not among "
                f"the frame's instances {ids}"
            )
        return instances, ids.index(int(d["instance_id"]))

    def __call__(self, dataset_dict):
        """
        Args:
            dataset_dict: a record of the record contract (with ``dataset_name``).

        Returns:
            dict: see the class docstring.
        """
        d = dataset_dict
        clip = self.read_clip(d)
        model_input, transforms = self.augment_clip(
            clip["frames"],
            clip["flow"],
            clip["proposal_boxes"],
            clip["proposal_scores"],
            d["query"],
        )
        out = {
            "image_id": d["image_id"],
            "video_id": d["video_id"],
            "frame_idx": int(d["frame_idx"]),
            "instance_id": int(d["instance_id"]),
            "dataset_name": d.get("dataset_name"),
            "height": int(d["height"]),
            "width": int(d["width"]),
            "frame_indices": torch.from_numpy(clip["frame_indices"]),
            **model_input,
        }
        out["instances"], out["referred_idx"] = self.build_targets(
            d, transforms, tuple(model_input["image"].shape[-2:])
        )
        return out


class VideoFrameDatasetMapper(DatasetMapper):
    """detectron2's ``DatasetMapper`` for records whose image is frame ``frame_idx`` (1-based) of
    the video ``file_name`` (an mp4 or a PNG-frame folder): the ``*_frames`` data sets.

    Works with ``build_detection_train_loader(cfg, mapper=VideoFrameDatasetMapper(cfg, True))`` and
    GeneralizedRCNN; masks (COCO RLE) are used when ``MODEL.MASK_ON`` (always as bitmasks).
    """

    @classmethod
    def from_config(cls, cfg, is_train=True):
        ret = super().from_config(cfg, is_train)
        ret["instance_mask_format"] = "bitmask"  # the records hold RLE, not polygons
        return ret

    def read_image(self, dataset_dict):
        """uint8 ``(H, W, 3)`` frame in ``self.image_format`` (BGR / RGB, else via PIL's modes)."""
        fmt = self.image_format if self.image_format in ("BGR", "RGB") else "RGB"
        image = VideoReader(dataset_dict["file_name"]).read(
            [int(dataset_dict["frame_idx"])], format=fmt
        )[0]
        if fmt != self.image_format:
            from PIL import Image

            image = utils.convert_PIL_to_numpy(Image.fromarray(image), self.image_format)
        return image

    def __call__(self, dataset_dict):
        """
        Args:
            dataset_dict: a detection record with ``file_name`` (video) and ``frame_idx``.

        Returns:
            dict: ``image`` uint8 ``(3, h, w)``, ``instances`` (training), and the record's fields.
        """
        dataset_dict = copy.deepcopy(dataset_dict)
        image = self.read_image(dataset_dict)
        utils.check_image_size(dataset_dict, image)

        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))

        if self.proposal_topk is not None:
            utils.transform_proposals(
                dataset_dict, image_shape, transforms, proposal_topk=self.proposal_topk
            )

        if not self.is_train:
            dataset_dict.pop("annotations", None)
        elif "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image_shape)  # detectron2's own
        return dataset_dict
