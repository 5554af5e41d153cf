"""Which data a model was trained on, and whether a data set is the one it was trained beside.

A name such as ``synthetic_a2d_test`` reads whatever tree ``$AAMN_SYNTHETIC`` (default
``$AAMN_DATASETS/synthetic``) holds.  A model trained on one synthetic benchmark (a size and a
seed) and evaluated on the same name after that tree was replaced by another benchmark would report
numbers of a different test set without a word.  So the trainer records the identity of its
training data in every checkpoint (``StreamCheckpointer.training_data``), and an evaluation
(``tools/train_net.py --eval-only``) refuses a synthetic data set of another size or seed.  A
draw registered under its own seed's name (``synthetic_seed<S>_*``, metadata ``synthetic_draw``)
is another benchmark by its name, and is evaluated when its tree is of that seed and the default
size.
"""

import os
from typing import Dict, Iterable, Optional

from detectron2.data import MetadataCatalog

__all__ = ["DatasetMismatchError", "check_evaluation_data", "dataset_identity", "training_data"]

TRAINING_DATA_KEY = "training_data"


class DatasetMismatchError(ValueError):
    """A data set is not the benchmark the model was trained beside."""


def dataset_identity(name: str) -> Optional[Dict]:
    """``{"benchmark": "synthetic", "size", "seed", "tree"}`` of a registered synthetic data set
    (from its tree's ``synthetic_info.json``); None for other data sets or a tree not written
    yet."""
    from ..synthetic import read_info

    meta_file = MetadataCatalog.get(name).get("synthetic_meta", None)
    if not meta_file:
        return None
    tree = os.path.dirname(os.path.dirname(os.path.abspath(meta_file)))
    info = read_info(tree)
    if info is None:
        return None
    return {
        "benchmark": "synthetic",
        "size": info.get("size"),
        "seed": info.get("seed"),
        "tree": tree,
    }


def training_data(names: Iterable[str]) -> Dict[str, Dict]:
    """``{name: dataset_identity(name)}`` of the data sets that have one (what a checkpoint
    records)."""
    out = {}
    for name in names:
        identity = dataset_identity(name)
        if identity is not None:
            out[name] = identity
    return out


def check_evaluation_data(trained_on: Optional[Dict], names: Iterable[str], weights: str) -> None:
    """Raise ``DatasetMismatchError`` when a synthetic data set of ``names`` is a benchmark of
    another size or seed than the synthetic data the checkpoint ``weights`` was trained on
    (``trained_on``: its recorded ``training_data``; nothing recorded: nothing to compare)."""
    synthetic = [v for v in (trained_on or {}).values() if v.get("benchmark") == "synthetic"]
    if not synthetic:
        return
    trained = {(v.get("size"), v.get("seed")) for v in synthetic}
    for name in names:
        identity = dataset_identity(name)
        if identity is None or (identity["size"], identity["seed"]) in trained:
            continue
        draw = MetadataCatalog.get(name).get("synthetic_draw", None)
        if draw is not None:  # the name says which draw it reads
            if (identity["size"], identity["seed"]) == ("default", draw):
                continue
            raise DatasetMismatchError(
                f"{name} names the draw of seed {draw} (size default), but {identity['tree']} "
                f"holds size {identity['size']} and seed {identity['seed']}: write the draw with "
                f"`python datasets/prepare_synthetic.py --seed {draw} --output "
                f"{identity['tree']}`"
            )
        ref = synthetic[0]
        raise DatasetMismatchError(
            f"{name} reads {identity['tree']}, the synthetic benchmark of size {identity['size']} "
            f"and seed {identity['seed']}, but {weights} was trained on size {ref['size']} and "
            f"seed {ref['seed']} ({ref['tree']}): its metrics there would be of another test "
            f"set.  Point AAMN_SYNTHETIC at that benchmark's tree (AAMN_SYNTHETIC={ref['tree']})"
        )
