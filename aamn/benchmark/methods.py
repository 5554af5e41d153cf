"""The systems the benchmark compares (their synthetic configs) and the numbers their papers
report (AAMN's Tables X-XI), labelled as reported."""

# AAMN is compared with its own backbone on the separate detector's proposals (the config the
# comparison's trials and curves were run with; the main job's model shares the detector's
# backbone: configs/synthetic/aamn.yaml).
METHODS = {
    "AAMN": "configs/synthetic/aamn_separate.yaml",
    "DynamicFilterSeg": "configs/synthetic/dynamic_filter.yaml",
    "CMDy": "configs/synthetic/cmdy.yaml",
}
A2D, JHMDB = "synthetic_a2d_test", "synthetic_jhmdb_test"


def config_file(method: str) -> str:
    """The path of a system's config (``METHODS``, relative to the repository's root), through the
    model zoo's configs inside the package: the same file from any working folder."""
    import os

    from ..model_zoo import get_config_file

    return get_config_file(os.path.relpath(METHODS[method], "configs"))


QUERY_TYPES = ("needs_action", "needs_appearance", "needs_location")

# As reported (not reproduced): A2D Sentences test / J-HMDB Sentences, AAMN paper Tables X-XI
# (Gavrilyuk et al. and CMDy rows as given there, from their own papers).
PAPERS = {
    "Gavrilyuk et al., RGB": {"a2d": [47.5, 34.7, 21.1, 8.0, 0.2, 19.8, 53.6, 42.1]},
    "Gavrilyuk et al., RGB + Flow": {
        "a2d": [50.0, 37.6, 23.1, 9.4, 0.4, 21.5, 55.1, 42.6],
        "jhmdb": [69.9, None, None, None, None, 23.3, 54.1, 54.2],
    },
    "CMDy, RGB": {
        "a2d": [60.7, 52.5, 40.5, 23.5, 4.5, 33.3, 62.3, 53.1],
        "jhmdb": [74.2, None, None, None, None, 30.1, 55.4, 57.6],
    },
    "CMDy, RGB + Flow (by the AAMN authors)": {
        "a2d": [63.3, 55.0, 42.8, 25.7, 4.9, 34.2, 62.9, 53.8],
        "jhmdb": [76.6, None, None, None, None, 30.8, 56.2, 58.0],
    },
    "AAMN, RGB": {
        "a2d": [65.2, 58.0, 44.5, 20.8, 1.6, 34.8, 58.8, 51.3],
        "jhmdb": [74.6, None, None, None, None, 27.8, 55.6, 56.3],
    },
    "AAMN, RGB + Flow": {
        "a2d": [68.9, 64.2, 54.5, 32.4, 3.4, 41.2, 63.4, 55.6],
        "jhmdb": [78.5, None, None, None, None, 32.0, 59.3, 59.0],
    },
}
PAPER_METRICS = ["P@0.5", "P@0.6", "P@0.7", "P@0.8", "P@0.9", "mAP", "overall_IoU", "mean_IoU"]
# AAMN Table X's speed column (ms per clip-query, hardware not stated; AAMN's with its proposals).
PAPER_MS_PER_CLIP = {
    "Gavrilyuk et al., RGB": 60.6,
    "Gavrilyuk et al., RGB + Flow": 174.7,
    "CMDy, RGB": 108.9,
    "CMDy, RGB + Flow (by the AAMN authors)": 201.3,
    "AAMN, RGB + Flow": 546.5,
}
