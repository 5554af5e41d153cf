"""Draw every tube AAMN scored on data-set samples (``aamn.utils.visualizer.draw_tube_panel``).

For each sample, one PNG: on top, the clip's 2L+1 frames with all K tubes (one colour per tube,
labelled with its matching score s_k; the selected tube thick), below, the predicted mask of the
selected tube in every frame against the ground truth of the annotated key frame (white), and the
actor / action attention of every word of the query as bars.

    python tools/visualize_tubes.py --config-file configs/synthetic/aamn.yaml \\
        --dataset synthetic_a2d_test --num 4 --output vis_tubes/ \\
        MODEL.WEIGHTS output/synthetic/aamn/model_final.pth
"""

import sys

from aamn.apps.drawing_tools import drawing_tool
from aamn.utils.visualizer import draw_tube_panel
from aamn.utils.cli import run_tool


def main(argv=None):
    return drawing_tool(
        __doc__, draw_tube_panel, "visualize_tubes", argv, default_num=4, architectures=["AAMN"]
    )


if __name__ == "__main__":
    sys.exit(run_tool(main))
