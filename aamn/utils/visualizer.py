"""Drawing referring-video outputs with detectron2's ``Visualizer``.

``RVOSVisualizer`` adds what a referring-video model needs to a ``Visualizer``: the referred mask
and box with the query's label (``draw_referred``), the K tubes of a clip with the selected one
highlighted (``draw_tubes``), a caption (``draw_caption``) and the actor / action word attention
as bars (``draw_word_attention``).  The functions below compose them into the pictures of
``tools/demo.py`` (``draw_video_frame``), ``tools/visualize.py`` (``draw_clip_strip``) and
``tools/visualize_tubes.py`` (``draw_tube_panel``).
"""

import functools
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.structures import BoxMode
from detectron2.utils.visualizer import ColorMode, VisImage, Visualizer
from matplotlib import patches

__all__ = [
    "RVOSVisualizer",
    "QUERY_COLORS",
    "TUBE_COLORS",
    "draw_video_frame",
    "draw_clip_strip",
    "draw_tube_panel",
    "attention_summary",
]

# One colour per query (demo) and per tube (tube panel), RGB in [0, 1].
QUERY_COLORS = [
    (0.2, 0.9, 0.2),
    (1.0, 0.4, 0.1),
    (0.2, 0.6, 1.0),
    (1.0, 0.2, 0.8),
    (1.0, 0.9, 0.1),
    (0.5, 1.0, 1.0),
]
TUBE_COLORS = [
    (0.9, 0.1, 0.1),
    (0.1, 0.5, 1.0),
    (1.0, 0.6, 0.0),
    (0.6, 0.2, 0.9),
    (0.0, 0.8, 0.8),
    (0.9, 0.9, 0.0),
    (0.6, 0.4, 0.2),
    (1.0, 0.4, 0.7),
]


def attention_summary(tokens: Sequence[str], weights, top: int = 2) -> str:
    """The ``top`` words of an attention vector: ``"man .45 black .20"``."""
    w = np.asarray(weights, dtype=float)[: len(tokens)]
    order = np.argsort(-w, kind="stable")[:top]
    return " ".join(f"{tokens[i]} {w[i]:.2f}".replace("0.", ".") for i in order)


def blend(pixels: np.ndarray, color, alpha) -> np.ndarray:
    """uint8 ``pixels`` (``(..., 3)``) with ``color`` (``(3,)`` or per pixel, in [0, 255]) laid
    over them at ``alpha`` (a number or per pixel, ``(..., 1)``), rounded: matplotlib's straight
    alpha compositing, as every overlay of this module blends."""
    mixed = pixels.astype(np.float32) * (1.0 - alpha) + np.asarray(color, np.float32) * alpha
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


class OverlayVisImage(VisImage):
    """detectron2's ``VisImage`` that renders only what is drawn on it, on a transparent canvas,
    and blends that onto the image in ``get_image``: the same picture without matplotlib
    resampling the whole frame through ``imshow`` (most of the cost of drawing a large frame)."""

    def reset_image(self, img):
        self.img = np.asarray(img, np.uint8)
        self.ax.set_xlim(0, self.width)
        self.ax.set_ylim(self.height, 0)
        # The limits are fixed: the data limits matplotlib updates for every patch added (a walk
        # over each vertex of a mask's outline) are never read.
        self.ax._update_patch_limits = lambda patch: None

    def get_image(self):
        s, (width, height) = self.canvas.print_to_buffer()
        rgba = np.frombuffer(s, dtype="uint8").reshape(height, width, 4)
        out = self.img
        if out.shape[:2] != (height, width):
            import cv2

            out = cv2.resize(out, (width, height), interpolation=cv2.INTER_LINEAR)
        out = out.copy()
        drawn = rgba[..., 3] > 0  # blend where something was drawn (matplotlib: straight alpha)
        alpha = rgba[..., 3][drawn, None].astype(np.float32) / 255.0
        out[drawn] = blend(out[drawn], rgba[..., :3][drawn], alpha)
        return out


class RVOSVisualizer(Visualizer):
    """A ``Visualizer`` (``ColorMode.IMAGE``) with referring-video drawings; every method returns
    the ``VisImage`` like detectron2's ``draw_*``.  ``overlay``: draw on an ``OverlayVisImage``
    (faster on large frames, the same picture)."""

    def __init__(
        self, img_rgb: np.ndarray, metadata=None, scale: float = 1.0, overlay: bool = False
    ):
        super().__init__(img_rgb, metadata=metadata, scale=scale, instance_mode=ColorMode.IMAGE)
        if overlay:
            self.output = OverlayVisImage(self.img, scale=scale)

    def draw_referred(self, mask, box, color, label: Optional[str] = None, alpha: float = 0.45):
        """The referred actor: ``mask`` bool ``(H, W)`` filled, ``box`` XYXY outlined, ``label``
        above the box."""
        if mask is not None and np.any(mask):
            self.draw_binary_mask(np.asarray(mask, np.uint8), color=color, alpha=alpha)
        if box is not None:
            self.draw_box(list(map(float, box)), edge_color=color, line_style="-")
            if label:
                x0, y0 = float(box[0]), float(box[1])
                self.draw_text(
                    label,
                    (x0, max(y0 - 2, 0)),
                    color=color,
                    horizontal_alignment="left",
                    font_size=self._default_font_size * 0.8,
                )
        return self.output

    def draw_tubes(
        self,
        boxes,
        selected: Optional[int] = None,
        scores: Optional[Sequence[float]] = None,
    ):
        """One frame of a clip's K tubes: box ``k`` of ``boxes (K, 4)`` in ``TUBE_COLORS[k]``,
        labelled ``k`` (and its score); the ``selected`` tube thick and solid, the others thin
        and dashed."""
        for k, box in enumerate(np.asarray(boxes, float)):
            color = TUBE_COLORS[k % len(TUBE_COLORS)]
            chosen = k == selected
            x0, y0, x1, y1 = box
            self.output.ax.add_patch(
                patches.Rectangle(
                    (x0, y0),
                    x1 - x0,
                    y1 - y0,
                    fill=False,
                    edgecolor=color,
                    linewidth=(3.0 if chosen else 1.0) * self.output.scale,
                    linestyle="-" if chosen else "--",
                )
            )
            label = f"{k}" if scores is None else f"{k}: {float(scores[k]):.2f}"
            self.draw_text(
                label + (" *" if chosen else ""),
                (x0 + 1, y0 + 1),
                color=color,
                horizontal_alignment="left",
                font_size=self._default_font_size * 0.6,
            )
        return self.output

    def draw_caption(self, lines: Sequence[Tuple[str, tuple]], font_size: Optional[float] = None):
        """Text lines ``(text, colour)`` stacked from the top-left corner."""
        size = font_size or self._default_font_size * 0.8
        for row, (text, color) in enumerate(lines):
            self.draw_text(
                text,
                (3, 3 + row * size * 1.6),
                color=color,
                horizontal_alignment="left",
                font_size=size,
            )
        return self.output

    def draw_word_attention(
        self,
        tokens: Sequence[str],
        attention: Dict[str, np.ndarray],
        origin: Tuple[float, float] = (4.0, 4.0),
        width: Optional[float] = None,
        height: float = 60.0,
    ):
        """Bars of the actor (green) and action (orange) attention of each word, the words
        below them, from ``origin`` over ``width`` x ``height`` pixels."""
        n = max(len(tokens), 1)
        width = width or (self.output.width - 2 * origin[0])
        slot = width / n
        size = min(self._default_font_size * 0.7, slot / 4)
        bar_h = height - 2.5 * size
        colors = {"actor": (0.1, 0.7, 0.1), "action": (1.0, 0.5, 0.0)}
        names = [k for k in ("actor", "action") if k in attention]
        for i, word in enumerate(tokens):
            x = origin[0] + i * slot
            for j, name in enumerate(names):
                a = float(np.asarray(attention[name])[i]) if i < len(attention[name]) else 0.0
                h = bar_h * min(max(a, 0.0), 1.0)
                bw = slot * 0.8 / max(len(names), 1)
                self.output.ax.add_patch(
                    patches.Rectangle(
                        (x + j * bw, origin[1] + bar_h - h), bw * 0.9, h, color=colors[name]
                    )
                )
            self.draw_text(
                word,
                (x + slot * 0.4, origin[1] + bar_h + 2),
                color="white",
                font_size=size,
            )
        for j, name in enumerate(names):
            self.draw_text(
                name,
                (origin[0] + width, origin[1] + j * size * 1.6),
                color=colors[name],
                horizontal_alignment="right",
                font_size=size,
            )
        return self.output


def display_scale(height: int, width: int, min_side: int = 360) -> int:
    """The integer scale at which a ``height x width`` frame is drawn so that captions can be
    read: the smallest bringing the shorter side to ``min_side`` pixels; 1 for larger frames."""
    return max(1, math.ceil(min_side / max(1, min(height, width))))


def _to_uint8_color(color) -> np.ndarray:
    return np.round(np.asarray(color, np.float32)[:3] * 255.0).astype(np.float32)


@functools.lru_cache(maxsize=1024)
def text_sprite(text: str, color: tuple, font_size: float) -> Tuple[np.ndarray, int, int]:
    """``text`` as detectron2's ``Visualizer.draw_text`` draws it at an anchor (left, top; its
    dark box, the colour brightened), rendered once per ``(text, colour, size)`` (cached):
    uint8 ``(h, w, 4)`` RGBA (straight alpha) cropped to what was drawn, and the offset
    ``(dx, dy)`` of its top-left corner from the anchor (the box's padding)."""
    h = int(math.ceil(font_size * 3)) + 16
    w = int(math.ceil(len(text) * font_size * 1.2)) + 16
    while True:
        vis = RVOSVisualizer(np.zeros((h, w, 3), np.uint8), overlay=True)
        vis.draw_text(text, (8, 8), color=color, horizontal_alignment="left", font_size=font_size)
        buf, (cw, ch) = vis.output.canvas.print_to_buffer()
        rgba = np.frombuffer(buf, np.uint8).reshape(ch, cw, 4)
        ys, xs = np.nonzero(rgba[..., 3])
        if len(xs) == 0:
            return np.zeros((1, 1, 4), np.uint8), 0, 0
        if xs.max() < cw - 2 and ys.max() < ch - 2:  # the whole text fits: crop it
            crop = rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].copy()
            return crop, int(xs.min()) - 8, int(ys.min()) - 8
        h, w = h * 2, w * 2


def paste_sprite(out: np.ndarray, sprite, x: float, y: float) -> None:
    """Alpha-blend a ``text_sprite`` onto the RGB frame ``out`` (in place), anchored at
    ``(x, y)``, clipped to the frame."""
    sprite, dx, dy = sprite
    x, y = int(round(x)) + dx, int(round(y)) + dy
    H, W = out.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + sprite.shape[1], W), min(y + sprite.shape[0], H)
    if x0 >= x1 or y0 >= y1:
        return
    part = sprite[y0 - y : y1 - y, x0 - x : x1 - x]
    alpha = part[..., 3:].astype(np.float32) / 255.0
    out[y0:y1, x0:x1] = blend(out[y0:y1, x0:x1], part[..., :3], alpha)


# matplotlib draws a point as dpi / 72 pixels (detectron2's VisImage canvas: 100 dpi)
_PX_PER_POINT = 100.0 / 72.0


def _default_font(height: int, width: int, scale: int = 1) -> float:
    """detectron2's ``Visualizer`` default font size (points) for a ``height x width`` picture
    drawn at ``scale`` (its drawings then grow with the scale)."""
    return max(math.sqrt(height * width) // 90, 10 // scale)


def _points(points: float) -> int:
    return max(1, int(round(points * _PX_PER_POINT)))


def paint_referred(out, mask, box, color, label: Optional[str], font: float) -> None:
    """``RVOSVisualizer.draw_referred`` with numpy / OpenCV, in place on the uint8 RGB ``out``:
    ``mask`` (bool ``(H, W)`` or None) filled at alpha 0.45 and outlined, ``box`` (XYXY or None)
    outlined at alpha 0.5, ``label`` above it, at detectron2's sizes for ``font``."""
    import cv2

    H, W = out.shape[:2]
    edge = _points(max(font // 15, 1))
    box_width = _points(max(font / 4, 1))
    rgb = _to_uint8_color(color)
    if mask is not None:
        mask = np.asarray(mask, np.uint8)
        x, y, w, h = cv2.boundingRect(mask)
        if w and h:  # filled at alpha 0.45, outlined in the colour (draw_binary_mask)
            part, inside = out[y : y + h, x : x + w], mask[y : y + h, x : x + w].astype(bool)
            part[inside] = blend(part[inside], rgb, 0.45)
            contours, _ = cv2.findContours(
                mask[y : y + h, x : x + w],
                cv2.RETR_EXTERNAL,
                cv2.CHAIN_APPROX_SIMPLE,
                offset=(x, y),
            )
            cv2.drawContours(out, contours, -1, tuple(float(c) for c in rgb), edge, cv2.LINE_AA)
    if box is not None:  # outlined at alpha 0.5 (draw_box), labelled above
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        m = box_width  # the outline's region, clipped to the frame
        ax, ay = max(min(x0, x1) - m, 0), max(min(y0, y1) - m, 0)
        bx, by = min(max(x0, x1) + m + 1, W), min(max(y0, y1) + m + 1, H)
        if ax < bx and ay < by:
            outline = np.zeros((by - ay, bx - ax), np.uint8)
            cv2.rectangle(outline, (x0 - ax, y0 - ay), (x1 - ax, y1 - ay), 1, box_width)
            part, on = out[ay:by, ax:bx], outline.astype(bool)
            part[on] = blend(part[on], rgb, 0.5)
        if label:
            paste_sprite(out, text_sprite(label, color, font * 0.8), x0, max(y0 - 2, 0))


def paint_tubes(
    out, boxes, selected: Optional[int], scores, scale: float, font: float, tag_points: float = 0
) -> None:
    """``RVOSVisualizer.draw_tubes`` with OpenCV, in place on the uint8 RGB ``out`` (the frame
    drawn at ``scale``): box ``k`` of ``boxes (K, 4)`` (the frame's coordinates) in
    ``TUBE_COLORS[k]``, labelled ``k`` and its score; the ``selected`` one thick and solid
    (3 points), the others thin (1 point) and dashed.  ``tag_points > 0``: the label is ``k``
    alone, at that size (the scores go to a legend: ``draw_video_tubes``)."""
    import cv2

    for k, box in enumerate(np.asarray(boxes, float) * scale):
        color = TUBE_COLORS[k % len(TUBE_COLORS)]
        rgb = tuple(float(c) for c in _to_uint8_color(color))
        chosen = k == selected
        width = _points((3.0 if chosen else 1.0) * scale)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        if chosen:
            cv2.rectangle(out, (x0, y0), (x1, y1), rgb, width, cv2.LINE_AA)
        else:  # matplotlib's "--": dashes of 3.7 line widths, gaps of 1.6
            dash, gap = 3.7 * width, 1.6 * width
            for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)),
                         ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):  # fmt: skip
                length = math.hypot(b[0] - a[0], b[1] - a[1])
                start = 0.0
                while start < length:
                    end = min(start + dash, length)
                    p = [int(round(a[i] + (b[i] - a[i]) * start / length)) for i in (0, 1)]
                    e = [int(round(a[i] + (b[i] - a[i]) * end / length)) for i in (0, 1)]
                    cv2.line(out, tuple(p), tuple(e), rgb, width, cv2.LINE_AA)
                    start = end + gap
        label = f"{k}" if scores is None or tag_points else f"{k}: {float(scores[k]):.2f}"
        label += " *" if chosen else ""
        size = tag_points or font * 0.6 * scale
        paste_sprite(out, text_sprite(label, color, size), x0 + scale, y0 + scale)


def draw_video_frame(image: np.ndarray, results: List[Dict], size=None) -> np.ndarray:
    """One output frame of ``tools/demo.py`` and the page: every query's mask and box in its
    colour and a caption (the query, its score, and AAMN's top actor / action words).

    Drawn as ``RVOSVisualizer.draw_referred`` and ``draw_caption`` draw them (the mask filled at
    alpha 0.45 with its outline, the box at alpha 0.5, detectron2's text boxes), without a
    matplotlib canvas per frame: masks and boxes are blended with numpy / OpenCV and every text
    is rendered once by detectron2's ``draw_text`` and pasted (``text_sprite``), so a 720p frame
    costs milliseconds.

    Args:
        image: uint8 ``(H, W, 3)`` RGB.
        results: ``VideoPredictor``'s per-query dicts of this frame (masks and boxes at
            ``image``'s size).
        size: ``(h, w)`` to draw at (the frame, masks and boxes resized; ``display_scale``);
            default the image's size.

    Returns:
        uint8 ``(h, w, 3)`` RGB.
    """
    import cv2

    if size is not None and tuple(size) != image.shape[:2]:
        h, w = size
        sy, sx = h / image.shape[0], w / image.shape[1]
        grow = cv2.INTER_LINEAR if h > image.shape[0] else cv2.INTER_AREA
        image = cv2.resize(image, (w, h), interpolation=grow)
        results = [
            {
                **r,
                "mask": cv2.resize(
                    r["mask"].astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST
                ).astype(bool),
                "box": np.asarray(r["box"], np.float32) * np.array([sx, sy, sx, sy], np.float32),
            }
            for r in results
        ]
    out = np.array(image, np.uint8, copy=True)
    H, W = out.shape[:2]
    font = _default_font(H, W)
    lines = []
    for q, r in enumerate(results):
        color = QUERY_COLORS[q % len(QUERY_COLORS)]
        paint_referred(out, r["mask"], r.get("box"), color, f"{q + 1}", font)
        lines.append((f'{q + 1} "{r["query"]}" {r["score"]:.2f}', color))
        att = r.get("word_attention") or {}
        if att:  # the most attended word of each kind, with its weight
            parts = [f"{k}: {attention_summary(r['tokens'], v, top=1)}" for k, v in att.items()]
            lines.append(("   " + "  ".join(parts), color))
    # Small videos get a small caption (at least 5 pixels), large ones detectron2's default size.
    size_ = max(5.0, min(font, H / 30))
    for row, (text, color) in enumerate(lines):  # draw_caption's layout
        paste_sprite(out, text_sprite(text, color, size_), 3, 3 + row * size_ * 1.6)
    return out


def _gt_of(record: Dict):
    """The referred instance's annotation of a record (None when the frame lacks it)."""
    ref = record["instance_id"]
    return next((a for a in record["annotations"] if a["instance_id"] == ref), None)


def draw_clip_strip(record: Dict, output: Dict, metadata, frames_rgb: np.ndarray) -> np.ndarray:
    """One picture of one (clip, query) of a data set (``tools/visualize.py``): the clip's frames
    side by side (the key frame alone for a key-frame model), each with the predicted mask and the
    selected tube's box; the key frame also outlines the ground truth in white; below, the query,
    the score and the word attention.  Returns uint8 ``(H', W', 3)`` RGB."""
    from pycocotools import mask as mask_util

    if "clip_instances" not in output:
        frames_rgb = frames_rgb[len(frames_rgb) // 2 : len(frames_rgb) // 2 + 1]
    T = len(frames_rgb)
    key = T // 2
    per_frame = output.get("clip_instances", [output["instances"]])
    gt = _gt_of(record)
    tiles = []
    for t in range(T):
        vis = RVOSVisualizer(frames_rgb[t], metadata=metadata, scale=2.0)
        inst = per_frame[t].to("cpu")
        box = (
            output["tube_boxes"][t].tolist()
            if "tube_boxes" in output
            else inst.pred_boxes.tensor[0].tolist()
        )
        vis.draw_referred(inst.pred_masks[0].numpy(), None, "lime")
        vis.draw_box(box, edge_color="yellow" if t == key else "orange")
        if t == key and gt is not None:
            vis.draw_binary_mask(
                mask_util.decode(gt["segmentation"]), color="white", alpha=0.15, edge_color="white"
            )
            vis.draw_text(
                f"key {record['frame_idx']}", (4, 4), horizontal_alignment="left", font_size=7
            )
        tiles.append(vis.get_output().get_image())
    strip = _pad_width(np.concatenate(tiles, axis=1), 640)
    return np.concatenate([strip, _caption(record, output, strip.shape[1])], axis=0)


def _pad_width(img: np.ndarray, width: int) -> np.ndarray:
    if img.shape[1] >= width:
        return img
    pad = np.full((img.shape[0], width - img.shape[1], 3), 255, np.uint8)
    return np.concatenate([img, pad], axis=1)


def _caption(record: Dict, output: Dict, width: int) -> np.ndarray:
    """A white band: the query and score, then the word-attention bars (when the model has
    them)."""
    words = output.get("tokens") or record.get("query", "").split()
    att = output.get("word_attention") or {}
    att = {k: np.asarray(v.cpu() if hasattr(v, "cpu") else v) for k, v in att.items()}
    height = 110 if att else 30
    cap = RVOSVisualizer(np.full((height, width, 3), 255, np.uint8))
    cap.draw_text(
        f'"{record["query"]}"  score {float(output["instances"].scores[0]):.2f}',
        (6, 4),
        horizontal_alignment="left",
        color="white",
        font_size=10,
    )
    if att:
        cap.draw_word_attention(words, att, origin=(6.0, 28.0), width=width - 70, height=78)
    return cap.get_output().get_image()


def draw_tube_panel(
    record: Dict, output: Dict, metadata, frames_rgb: np.ndarray, scale: float = 2.0
) -> np.ndarray:
    """Every tube of one AAMN clip (``tools/visualize_tubes.py``).

    Row 1: each frame with the K tubes (``all_tube_boxes``), each in its colour and labelled with
    its score ``s_k``; the selected one thick.  Row 2: each frame with the predicted mask (green)
    and, on the annotated key frame, the ground-truth mask and box (white).  Below: the query and
    the actor / action attention of every word.

    Returns:
        uint8 RGB picture.
    """
    from pycocotools import mask as mask_util

    T = len(frames_rgb)
    key = T // 2
    selected = int(output["tube_index"])
    scores = output["tube_scores"].cpu().numpy()
    all_boxes = output["all_tube_boxes"].cpu().numpy()  # (K, T, 4)
    gt = _gt_of(record)
    tubes_row, masks_row = [], []
    for t in range(T):
        vis = RVOSVisualizer(frames_rgb[t], metadata=metadata, scale=scale)
        vis.draw_tubes(all_boxes[:, t], selected, scores)
        tubes_row.append(vis.get_output().get_image())
        vis = RVOSVisualizer(frames_rgb[t], metadata=metadata, scale=scale)
        inst = output["clip_instances"][t].to("cpu")
        vis.draw_referred(
            inst.pred_masks[0].numpy(), all_boxes[selected, t], (0.2, 0.9, 0.2), label="pred"
        )
        if t == key and gt is not None:
            vis.draw_binary_mask(
                mask_util.decode(gt["segmentation"]), color="white", alpha=0.2, edge_color="white"
            )
            gt_box = BoxMode.convert(
                list(gt["bbox"]), gt.get("bbox_mode", BoxMode.XYXY_ABS), BoxMode.XYXY_ABS
            )
            vis.draw_box(list(gt_box), edge_color="white", line_style="--")
            vis.draw_text(
                f"GT, frame {record['frame_idx']}",
                (4, 4),
                horizontal_alignment="left",
                font_size=7,
                color="white",
            )
        masks_row.append(vis.get_output().get_image())
    rows = np.concatenate(
        [np.concatenate(tubes_row, axis=1), np.concatenate(masks_row, axis=1)], axis=0
    )
    rows = _pad_width(rows, 640)
    return np.concatenate([rows, _caption(record, output, rows.shape[1])], axis=0)


# The size of the tubes picture's labels, captions and legend (points; about 14 pixels).
LABEL_POINTS = 10.0


def draw_video_tubes(frames_rgb: Sequence[np.ndarray], results: Sequence[List[Dict]]) -> np.ndarray:
    """The tubes picture of the web page (``aamn.apps.web_demo``): for each query a row of the
    first clip's frames; AAMN's frames show every one of its K tubes tagged with its number (the
    selected one thick, ``draw_tubes``) and a legend under the row gives each tube's score, in
    its colour, at ``LABEL_POINTS`` (readable, where detectron2's default label size at this
    scale is about 6 points and the labels of nearby tubes overlap); a key-frame model's frames
    show its mask and box; each row is headed by its query.  Drawn with OpenCV and cached text
    sprites (``paint_tubes``, ``paint_referred``) without a matplotlib figure per frame.

    Args:
        frames_rgb: the clip's frames, uint8 ``(H, W, 3)`` RGB.
        results: per frame, ``VideoPredictor``'s per-query dicts.

    Returns:
        uint8 RGB picture.
    """
    import cv2

    h, w = frames_rgb[0].shape[:2]
    scale = display_scale(h, w, min_side=180)
    size = (w * scale, h * scale)
    font = _default_font(h, w, scale)
    rows = []
    for q in range(len(results[0])):
        color = QUERY_COLORS[q % len(QUERY_COLORS)]
        tiles = []
        for t, frame in enumerate(frames_rgb):
            r = results[t][q]
            tile = cv2.resize(np.ascontiguousarray(frame, np.uint8), size,
                              interpolation=cv2.INTER_NEAREST)  # fmt: skip
            if "all_tube_boxes" in r:
                step = min(t, r["all_tube_boxes"].shape[1] - 1)  # frame t of the first clip
                paint_tubes(tile, r["all_tube_boxes"][:, step], r["tube_index"],
                            r["tube_scores"], scale, font, LABEL_POINTS)  # fmt: skip
            else:
                mask = cv2.resize(np.asarray(r["mask"], np.uint8), size,
                                  interpolation=cv2.INTER_NEAREST)  # fmt: skip
                box = None if r.get("box") is None else np.asarray(r["box"], float) * scale
                paint_referred(tile, mask, box, color, None, font * scale)
            tiles.append(tile)
        row = np.concatenate(tiles, axis=1)
        band = np.full((24, row.shape[1], 3), 255, np.uint8)
        paste_sprite(band, text_sprite(f'{q + 1} "{results[0][q]["query"]}"', color,
                                       LABEL_POINTS), 3, 3)  # fmt: skip
        rows += [band, row]
        first = results[0][q]
        if "all_tube_boxes" in first:  # the legend: each tube's score, the selected one starred
            legend = np.full((24, row.shape[1], 3), 255, np.uint8)
            x = 3
            for k, score in enumerate(np.asarray(first["tube_scores"], float)):
                label = f"{k}: {score:.2f}" + (" *" if k == first["tube_index"] else "")
                sprite = text_sprite(label, TUBE_COLORS[k % len(TUBE_COLORS)], LABEL_POINTS)
                paste_sprite(legend, sprite, x, 3)
                x += sprite[0].shape[1] + 12
            rows.append(legend)
    width = max(r.shape[1] for r in rows)
    return np.concatenate([_pad_width(r, width) for r in rows], axis=0)
