"""Register the standard data set names on import.

Roots are under ``$AAMN_DATASETS`` (default ``./datasets``), the convention of detectron2's
``DETECTRON2_DATASETS``::

    $AAMN_DATASETS/a2d_sentences               a2d_sentences_{train,val,test}(_frames)
    $AAMN_DATASETS/jhmdb_sentences             jhmdb_sentences_test
    $AAMN_DATASETS/ref-youtube-vos             ref_youtube_vos_{train,valid}, .._train_frames
    $AAMN_DATASETS/ref-davis                   ref_davis_{train,valid}, ref_davis_valid_all_frames
    $AAMN_DATASETS/mevis                       mevis_{train,valid_u,valid}
    $AAMN_DATASETS/synthetic_ytvos             synthetic_ytvos_{train,valid,test}(_all_frames)
    $AAMN_DATASETS/synthetic_mevis             synthetic_mevis_{train,valid,test}
    $AAMN_SYNTHETIC/a2d_sentences              synthetic_a2d_{train,val,test}(_frames),
                                               synthetic_a2d_test_full
    $AAMN_SYNTHETIC/jhmdb_sentences            synthetic_jhmdb_test
    $AAMN_DATASETS/synthetic_seed<S>/...       synthetic_seed<S>_a2d_{train,val,test},
                                               synthetic_seed<S>_jhmdb_test (S = 1, 2, 3)

``val`` is the part of the training videos listed in the tree's ``aamn_val_videos.txt`` (the
synthetic benchmark writes it; ``datasets/make_val_split.py`` makes one for the real release);
``train`` leaves those videos out.  ``$AAMN_SYNTHETIC`` defaults to
``$AAMN_DATASETS/synthetic`` (the default size); the other sizes live in
``$AAMN_DATASETS/synthetic_<size>`` and are used by pointing ``$AAMN_SYNTHETIC`` there.  Other
draws of the default size (``prepare_synthetic.py --seed S --output datasets/synthetic_seed<S>``:
new videos of the same distribution) give more training videos (``DATASETS.TRAIN``
``("synthetic_a2d_train", "synthetic_seed1_a2d_train")`` trains on twice as many) and a second
J-HMDB layout for diagnoses that must not read the test split.

Registration reads nothing: a missing tree only fails (with a clear error) when its records are
asked for.  Registering again (re-import, reload) replaces the previous registration.
"""

import os

from aamn.utils.io import datasets_root, synthetic_root

from .register_a2d_sentences import SPLITS, register_a2d_frames, register_a2d_sentences
from .register_jhmdb_sentences import register_jhmdb_sentences
from .register_ref_youtube_vos import (
    register_mevis,
    register_ref_davis,
    register_ref_youtube_vos,
    register_ref_youtube_vos_frames,
)

__all__ = [
    "check_registered",
    "register_all_a2d",
    "register_all_jhmdb",
    "register_all_synthetic",
    "register_all_ytvos",
    "register_synthetic_draws",
    "register_synthetic_tree",
    "datasets_root",
]


def register_all_a2d(root):
    """``a2d_sentences_{train,val,test}`` and their ``_frames`` sets from
    ``<root>/a2d_sentences``."""
    tree = os.path.join(root, "a2d_sentences")
    for split in SPLITS:
        register_a2d_sentences(f"a2d_sentences_{split}", tree, split)
        register_a2d_frames(f"a2d_sentences_{split}_frames", tree, split)


def register_all_jhmdb(root):
    """``jhmdb_sentences_test`` from ``<root>/jhmdb_sentences``."""
    register_jhmdb_sentences("jhmdb_sentences_test", os.path.join(root, "jhmdb_sentences"))


def register_all_ytvos(root):
    """Ref-YouTube-VOS (``<root>/ref-youtube-vos``: ``ref_youtube_vos_train``, and
    ``ref_youtube_vos_valid`` without masks) and Ref-DAVIS17 in its Ref-YouTube-VOS form
    (``<root>/ref-davis``: ``ref_davis_{train,valid}``, and ``ref_davis_valid_all_frames``, every
    frame of every expression: the J&F protocol), and MeViS (``<root>/mevis``:
    ``mevis_{train,valid_u,valid}``, every frame, J&F)."""
    ytvos, davis = os.path.join(root, "ref-youtube-vos"), os.path.join(root, "ref-davis")
    for split in ("train", "valid"):
        register_ref_youtube_vos(f"ref_youtube_vos_{split}", ytvos, split)
        register_ref_davis(f"ref_davis_{split}", davis, split)
    register_ref_davis("ref_davis_valid_all_frames", davis, "valid", all_frames=True)
    register_ref_youtube_vos_frames("ref_youtube_vos_train_frames", ytvos, "train")
    for split in ("train", "valid_u", "valid"):  # valid: no masks (its server scores it)
        # train: the frames showing a referred object (a model trains on them); the others every
        # frame (J&F)
        mevis = os.path.join(root, "mevis")
        register_mevis(f"mevis_{split}", mevis, split, all_frames=split != "train")
    # the synthetic benchmark in these layouts (datasets/prepare_synthetic.py --layout ...)
    for split in ("train", "valid", "test"):
        tree = os.path.join(root, "synthetic_ytvos")
        register_ref_youtube_vos(f"synthetic_ytvos_{split}", tree, split)
        register_mevis(f"synthetic_mevis_{split}", os.path.join(root, "synthetic_mevis"), split,
                       all_frames=split != "train")  # fmt: skip
    for split in ("valid", "test"):
        register_ref_youtube_vos(
            f"synthetic_ytvos_{split}_all_frames", tree, split, all_frames=True
        )


def register_synthetic_tree(tree, prefix="synthetic", **metadata):
    """``<prefix>_a2d_{train,val,test}``, the proposal detector's ``<prefix>_a2d_{split}_frames``
    and ``<prefix>_jhmdb_test`` from a synthetic benchmark's ``<tree>/{a2d,jhmdb}_sentences``
    (their ``synthetic_meta.json`` named; ``metadata``: more fields).  Returns the A2D tree and
    its ``synthetic_meta.json``."""
    a2d, jhmdb = os.path.join(tree, "a2d_sentences"), os.path.join(tree, "jhmdb_sentences")
    meta = os.path.abspath(os.path.join(a2d, "synthetic_meta.json"))
    for split in SPLITS:
        register_a2d_sentences(f"{prefix}_a2d_{split}", a2d, split, synthetic_meta=meta, **metadata)
        register_a2d_frames(f"{prefix}_a2d_{split}_frames", a2d, split)
    register_jhmdb_sentences(
        f"{prefix}_jhmdb_test",
        jhmdb,
        synthetic_meta=os.path.abspath(os.path.join(jhmdb, "synthetic_meta.json")),
        **metadata,
    )
    return a2d, meta


def register_all_synthetic(tree):
    """The synthetic benchmark's names from ``<tree>/{a2d,jhmdb}_sentences``
    (``register_synthetic_tree``, and the full-video test set)."""
    a2d, meta = register_synthetic_tree(tree)
    # Every frame annotated: the full-video protocol (AAMN Table XIII) over whole videos.
    register_a2d_sentences(
        "synthetic_a2d_test_full",
        a2d,
        "test",
        annotation_dir="synthetic_full_annotations",
        synthetic_meta=meta,
    )


SYNTHETIC_DRAWS = (1, 2, 3)


def register_synthetic_draws(root, seeds=SYNTHETIC_DRAWS):
    """``synthetic_seed<S>_a2d_{train,val,test}`` and ``synthetic_seed<S>_jhmdb_test`` from
    ``<root>/synthetic_seed<S>`` (other draws of the default size, module docstring); their
    metadata's ``synthetic_draw`` is ``S``: a model trained on another seed may be evaluated on
    them (``provenance.check_evaluation_data``), their name says which draw they read."""
    for seed in seeds:
        tree = os.path.join(root, f"synthetic_seed{seed}")
        register_synthetic_tree(tree, f"synthetic_seed{seed}", synthetic_draw=seed)


# The prefixes of the project's own names (detectron2 registers about 70 COCO / LVIS / ... names
# too, which a message listing every name would bury them under).
PROJECT_PREFIXES = (
    "a2d_sentences",
    "jhmdb_sentences",
    "synthetic_",
    "ref_youtube_vos",
    "ref_davis",
)


def check_registered(key: str, names) -> None:
    """``KeyError`` naming the config ``key`` (e.g. ``DATASETS.TRAIN``), a name of ``names`` that
    is not registered, the registered names closest to it and the project's own names."""
    import difflib

    from detectron2.data import DatasetCatalog

    known = DatasetCatalog.list()
    for name in names:
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        ours = sorted(n for n in known if n.startswith(PROJECT_PREFIXES))
        raise KeyError(
            f"{key} names the data set {name!r}, which is not registered"
            + (f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "")
            + f" (the project's data sets: {', '.join(ours)})"
        )


_root = datasets_root()
register_all_a2d(_root)
register_all_jhmdb(_root)
register_all_ytvos(_root)
register_all_synthetic(synthetic_root())
register_synthetic_draws(_root)
