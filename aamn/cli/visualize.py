"""Draw a model's masks (and AAMN's selected tubes) on data-set samples with detectron2's
``Visualizer`` (``aamn.utils.visualizer.draw_clip_strip``).

For each sample, one PNG: the clip's 2L+1 frames side by side at their original size, each with the
predicted mask and the selected tube's box (the key frame, in the middle, also outlines the
ground-truth mask in white), and below them the query with its actor / action word attention.
``tools/visualize_tubes.py`` draws every tube of the clip instead.

    python tools/visualize.py --config-file configs/synthetic/aamn.yaml \\
        --dataset synthetic_a2d_test --num 8 --output vis/ \\
        MODEL.WEIGHTS output/synthetic/aamn/model_final.pth
"""

import sys

from aamn.apps.drawing_tools import drawing_tool
from aamn.utils.visualizer import draw_clip_strip
from aamn.utils.cli import run_tool


def main(argv=None):
    return drawing_tool(__doc__, draw_clip_strip, "visualize", argv)


if __name__ == "__main__":
    sys.exit(run_tool(main))
