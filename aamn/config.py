"""Config keys shared by the project's models, and how a config is read and checked, composed the
way detectron2 projects compose theirs.

* ``add_rvos_config(cfg)``: the keys every referring-video model shares (clips, flow, queries,
  language encoder, the second stream's input statistics, tiny backbone, optimizer, evaluation).
* Each model's own keys live beside the model (as detectron2's ``point_rend/config.py``):
  ``aamn.modeling.meta_arch.aamn_config.add_aamn_config`` (``MODEL.AAMN``),
  ``dynamic_filter_config``, ``cmdy_config`` and ``aamn.modeling.clip_encoder_config`` (the
  comparison systems' clip encoder); each calls ``add_rvos_config`` first (``adds_keys``).  A new
  model adds one such function and lists it in ``aamn.modeling.meta_arch.MODEL_CONFIGS``.

Every function is idempotent: calling it twice on the same config is harmless.
``get_aamn_cfg(file, opts)`` is detectron2's defaults + every function of ``MODEL_CONFIGS``, merged
with a file and overrides (read as plain YAML, bounded in size and alias expansion), checked, with
errors that name the file and the key.
"""

import functools
import math
import os
import re
from contextlib import contextmanager

from detectron2.config import CfgNode as CN

__all__ = [
    "check_choice",
    "add_rvos_config",
    "adds_keys",
    "get_aamn_cfg",
    "config_from_text",
    "migrate_renamed_keys",
    "ConfigError",
    "check_cfg_values",
    "check_device",
    "read_config_chain",
    "RENAMED_KEYS",
]

# Keys that moved; an old config that uses one gets an error naming the new key.
RENAMED_KEYS = {
    "MODEL.AAMN.NUM_PROPOSALS": "INPUT.CLIP.NUM_PROPOSALS",
    "MODEL.AAMN.FLOW_PIXEL_MEAN": "MODEL.FLOW_PIXEL_MEAN",
    "MODEL.AAMN.FLOW_PIXEL_STD": "MODEL.FLOW_PIXEL_STD",
    "MODEL.AAMN.INIT_FLOW_FROM_RGB": "MODEL.INIT_FLOW_FROM_RGB",
    "TEST.VIDEO.FLOW_METHOD": "INPUT.FLOW.METHOD",
    "MODEL.RPN.NMS_ON_PREFIX": "MODEL.PROPOSAL_GENERATOR.NAME ('PrefixNMSRPN' or 'RPN')",
}


def adds_keys(node: str, after=None):
    """Decorator of a config function ``fn(_C)`` that adds ``MODEL.<node>``: the returned
    ``fn(cfg)`` first runs ``after`` (the function whose keys these extend), returns at once when
    ``cfg.MODEL`` already has ``node`` (idempotent), edits ``cfg`` in place (a frozen config is
    frozen again afterwards) and returns it."""

    def decorate(fn):
        @functools.wraps(fn)
        def add(cfg):
            if after is not None:
                after(cfg)
            if node not in cfg.MODEL:
                with _unfrozen(cfg):
                    fn(cfg)
            return cfg

        return add

    return decorate


@contextmanager
def _unfrozen(cfg):
    """Edit ``cfg`` in place; a frozen config is frozen again afterwards."""
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    try:
        yield cfg
    finally:
        if was_frozen:
            cfg.freeze()


@adds_keys("LANGUAGE", after=None)
def add_rvos_config(_C):
    """Add the keys shared by every referring-video model to a detectron2 config (in place)."""
    # ------------------------------------------------------------------ input / clips
    _C.INPUT.CLIP = CN()
    # L: a clip has 2L+1 frames centred on the annotated (key) frame; edge frames repeat at the
    # video's ends.  Paper: L = 4 (9 frames).
    _C.INPUT.CLIP.HALF_LENGTH = 4
    # K: proposals per frame read from the data set's proposal file (paper Table I/II: 6).
    _C.INPUT.CLIP.NUM_PROPOSALS = 6
    # Read the proposal file.  A model that needs no proposals (a segmentation-from-a-sentence
    # model that predicts masks directly) sets it False; AAMN requires True.
    _C.INPUT.CLIP.LOAD_PROPOSALS = True
    # Which mapper reads DATASETS.TRAIN / TEST: "clip" (ClipDatasetMapper, referring-video
    # models), "frame" (VideoFrameDatasetMapper, the proposal detector) or "" = from each data
    # set's MetadataCatalog "evaluator_type" ("rvos" -> clip, otherwise frame).
    _C.INPUT.DATASET_MAPPER_NAME = ""
    _C.INPUT.FLOW = CN()
    # Load the optical-flow clip (x, y, magnitude).  False gives the RGB-only pipeline.
    _C.INPUT.FLOW.ENABLED = True
    # Folder of the flow cache, relative to the data set root (datasets/prepare_flow.py writes it).
    _C.INPUT.FLOW.DIR = "flow"
    # Flow values are quantised to uint8 as 128 + v * 127 / BOUND (pixels), clipped at +-BOUND;
    # magnitude as |v| * 255 / (BOUND * sqrt(2)).  Must match the value used to write the cache.
    _C.INPUT.FLOW.BOUND = 20.0
    # How the flow is computed: one of aamn.data.flow.FLOW_METHODS ("dis": OpenCV's DIS at its
    # medium preset; "dis_fast", "dis_ultrafast": its cheaper presets; "farneback").  The flow
    # cache a model trains and is evaluated on must have been written with it (its flow.json
    # "method", checked when read), and whole-video inference computes the flow with it.
    _C.INPUT.FLOW.METHOD = "dis"
    # Frames "resized and padded to FIXED_SIZE x FIXED_SIZE" (paper Sec. IV-B: 512): the longer
    # side is resized to FIXED_SIZE (train and test; replaces MIN/MAX_SIZE_*) and the model pads
    # every frame to a FIXED_SIZE square (zeros after normalisation).  0: off (detectron2's
    # resize, padded to the batch's largest frame).
    _C.INPUT.FIXED_SIZE = 0
    # Query length in words: longer queries are cut, shorter padded (paper: 20).
    _C.INPUT.QUERY_MAX_LENGTH = 20
    # Swap the words "left" and "right" in the query when a clip is flipped horizontally.
    _C.INPUT.FLIP_SWAPS_LEFT_RIGHT = True

    # Train RoIAlign (the poolers of aamn.modeling.poolers: the detector's box head and AAMN's
    # stream heads) through aamn.layers.roi_align_separable on CPU: the same values as
    # torchvision's kernel, a backward pass of matrix products instead of one thread scattering
    # every sample (the training step's gain: BENCHMARKS.md).  Inference and GPUs keep
    # torchvision's kernel.
    _C.MODEL.SEPARABLE_ROI_ALIGN = True
    # The proposal detector's box head (its fully connected layers) under bf16 autocast at
    # inference on CPU (aamn.modeling.roi_heads.detector_heads; the class and box predictors stay
    # float32).  It changes the computation: its val accuracy and speed are in BENCHMARKS.md.
    _C.MODEL.ROI_BOX_HEAD.INFERENCE_BF16 = False
    # Decoded frames (mp4) and flow frames kept in memory by each process, in MB (an LRU): the
    # training sets' clips are read again every epoch, and an mp4 frame costs a seek and a decode.
    # 0 turns it off.  Each data-loader worker has its own.
    _C.DATALOADER.FRAME_CACHE_MB = 1024

    # ------------------------------------------------------------------ language encoder
    _C.MODEL.LANGUAGE = CN()
    # Name in aamn.modeling.LANGUAGE_ENCODER_REGISTRY.
    _C.MODEL.LANGUAGE.NAME = "BiLSTMEncoder"
    # Word embedding width Ce (paper: 300, GloVe).
    _C.MODEL.LANGUAGE.EMBED_DIM = 300
    # BiLSTM hidden size per direction (paper: 512) and number of layers (paper: 2).
    _C.MODEL.LANGUAGE.HIDDEN_DIM = 512
    _C.MODEL.LANGUAGE.NUM_LAYERS = 2
    # Vocabulary file (JSON list of words).  Empty: built from the queries of DATASETS.TRAIN and
    # written to OUTPUT_DIR/vocab.json, which evaluation then reads.
    _C.MODEL.LANGUAGE.VOCAB_FILE = ""
    # Words seen fewer times than this in the training queries map to <unk>.
    _C.MODEL.LANGUAGE.MIN_FREQ = 1
    # GloVe / word2vec text-format vectors to initialise the embeddings ("" = random init).
    _C.MODEL.LANGUAGE.WORD_VECTORS = ""
    # Keep the word embeddings fixed during training.
    _C.MODEL.LANGUAGE.FREEZE_EMBEDDINGS = False

    # ------------------------------------------------------------------ the Flow stream
    # Mean / std of the flow input (x, y, magnitude), in the cached units (pixels); the RGB stream
    # uses detectron2's MODEL.PIXEL_MEAN / PIXEL_STD.
    _C.MODEL.FLOW_PIXEL_MEAN = [0.0, 0.0, 0.0]
    _C.MODEL.FLOW_PIXEL_STD = [1.0, 1.0, 1.0]
    # Loading MODEL.WEIGHTS (aamn.modeling.StreamCheckpointer): when the file has no Flow-stream
    # weights (e.g. a detectron2 detector checkpoint or a model-zoo .pkl), copy its backbone.*
    # weights into flow_backbone.* as well.
    _C.MODEL.INIT_FLOW_FROM_RGB = True

    # torch.compile the model's backbones (aamn.modeling.compile): at their first call, tens of
    # seconds on 2 CPU cores; a backbone that cannot be compiled runs eagerly (a warning).  Off by
    # default: the compile time outweighs what it saves on a short video or a short training
    # (BENCHMARKS.md, "Speed levers").
    _C.MODEL.COMPILE_BACKBONES = False

    # ------------------------------------------------------------------ tiny backbone
    # aamn.modeling.backbone.build_tiny_backbone: a small ResNet-style network for CPU runs.
    _C.MODEL.TINY = CN()
    _C.MODEL.TINY.STEM_CHANNELS = 16
    _C.MODEL.TINY.STAGE_CHANNELS = [16, 32, 64, 128]  # res2 .. res5
    _C.MODEL.TINY.BLOCKS_PER_STAGE = 1
    _C.MODEL.TINY.OUT_FEATURES = ["res4"]
    # Normalisation of the tiny backbone: "BN" (trained from scratch on batches of B*T frames),
    # "GN" (GroupNorm with NUM_GROUPS groups, reduced to a divisor of the width) or "FrozenBN".
    _C.MODEL.TINY.NORM = "BN"
    _C.MODEL.TINY.NUM_GROUPS = 8
    # Keep the tiny backbone's (and its FPN's) weights and input in the channels-last memory
    # format: the same values, faster convolutions on CPU (BENCHMARKS.md, "Speed levers").
    _C.MODEL.TINY.CHANNELS_LAST = False

    # VGG-16 (build_vgg16_backbone): the paper's streams.  WIDTH_SCALE scales every width (1.0 =
    # VGG-16; the synthetic small variant 0.125); NORM "" (the original) or e.g. "BN";
    # OUT_FEATURES from conv1_2, conv2_2, conv3_3, conv4_3, conv5_3 (stride 16).
    _C.MODEL.VGG = CN()
    _C.MODEL.VGG.WIDTH_SCALE = 1.0
    _C.MODEL.VGG.NORM = ""
    _C.MODEL.VGG.OUT_FEATURES = ["conv5_3"]

    # ------------------------------------------------------------------ solver
    # "SGD" (detectron2's, the paper's) or "AdamW" (used by the from-scratch synthetic configs).
    _C.SOLVER.OPTIMIZER = "SGD"

    # ------------------------------------------------------------------ evaluation
    _C.TEST.RVOS = CN()
    # Write a per-sample JSON (image_id, IoU, score, box, query) into OUTPUT_DIR/inference.
    _C.TEST.RVOS.SAVE_PER_SAMPLE = True

    # Learning curves (aamn.engine.learning_curve): every TEST.EVAL_PERIOD iterations the
    # evaluation of DATASETS.TEST (the validation split) is recorded in OUTPUT_DIR/
    # learning_curve.json with the training's CPU seconds so far.  STOP_PATIENCE > 0 ends the
    # training once each of the last STOP_PATIENCE evaluations added less than STOP_MIN_GAIN to
    # METRIC ("section/name" of the evaluation's results) over the best before them; 0 trains to
    # SOLVER.MAX_ITER.  DECAY_PERIODS > 0: a converged curve goes on for DECAY_PERIODS
    # evaluation periods with its learning rate times DECAY_FACTOR before it ends (a curve not
    # converged DECAY_PERIODS periods before SOLVER.MAX_ITER ends there, to be extended).
    _C.TEST.CURVE = CN()
    _C.TEST.CURVE.METRIC = "segm/P@0.5"
    _C.TEST.CURVE.STOP_MIN_GAIN = 0.5
    _C.TEST.CURVE.STOP_PATIENCE = 0
    _C.TEST.CURVE.DECAY_FACTOR = 0.1
    _C.TEST.CURVE.DECAY_PERIODS = 0

    # ------------------------------------------------------------------ whole-video inference
    # aamn.engine.VideoPredictor (tools/demo.py): every frame of a video of any length.
    _C.TEST.VIDEO = CN()
    # A model that segments its whole clip (AAMN) steps through the video clip by clip, and the
    # tube of each clip is chosen by argmax_k [sigmoid(s_k) + LINK_WEIGHT * IoU(b_k, b_prev)]:
    # b_k is tube k's box in the clip's first frame, b_prev the previous clip's selected box in
    # its last frame (the neighbouring frame), so the referred actor stays the same across clip
    # boundaries.  0 selects every clip's tube independently: chosen on the validation split,
    # where a weight above 0 lost accuracy while it steadied the box at clip boundaries
    # (BENCHMARKS.md has both); raise it where a steady box matters more.
    _C.TEST.VIDEO.LINK_WEIGHT = 0.0
    # "clip": a model that segments its whole clip (AAMN) steps clip by clip (2L+1 frames per
    # pass); "frame": every frame is the key frame of its own clip (the only way of a key-frame
    # model; for AAMN 2L+1 times the work, measured in BENCHMARKS.md).
    _C.TEST.VIDEO.STEP = "clip"
    # Clips per forward pass when stepping one frame at a time.
    _C.TEST.VIDEO.BATCH_SIZE = 4
    # A video larger than the model's test-time resize: each decoded frame is resized to that
    # size once, and the flow, the proposals and the model run there (masks and boxes come back
    # at the video's size).  False: flow and proposals at the video's own resolution.
    _C.TEST.VIDEO.RESIZE_FIRST = True


class ConfigError(ValueError):
    """A config file or override that cannot be used (unknown key, bad value, missing file)."""


def check_choice(name: str, value, choices) -> None:
    """Raise ``ConfigError`` ``Unknown <name> <value>; choose from <choices>`` unless ``value`` is
    one of ``choices`` (``name``: the config key, e.g. ``MODEL.AAMN.LINK_FEATURE``)."""
    if value not in choices:
        raise ConfigError(f"Unknown {name} {value!r}; choose from {tuple(choices)}")


def cfg_for_tool(parser, config_file, opts=(), weights: str = ""):
    """``get_aamn_cfg`` for a command-line tool: a ``ConfigError`` ends the tool through
    ``parser.error`` (exit status 2, the message naming the file and key).  ``weights``: what
    ``MODEL.WEIGHTS`` must name (e.g. "a trained checkpoint"); it is then checked to be a file."""
    try:
        cfg = get_aamn_cfg(config_file, opts)
        check_device(cfg)
        if weights:
            check_weights(cfg, weights)
    except (ConfigError, FileNotFoundError) as e:
        parser.error(str(e))
    return cfg


def check_weights(cfg, what: str) -> None:
    """Raise ``FileNotFoundError`` ``MODEL.WEIGHTS must name <what>; got <value>`` unless
    ``MODEL.WEIGHTS`` names a file or a URL detectron2 takes (``detectron2://``, ``https://``,
    ``http://``, ``file://``: fetched and checked when loaded), so a model used for inference
    never starts from nothing."""
    from .utils.io import is_weights_url, local_weights_file

    weights = str(cfg.MODEL.WEIGHTS)
    if is_weights_url(weights) and not weights.startswith("file://"):
        return
    if not weights or not os.path.isfile(local_weights_file(weights)):
        raise FileNotFoundError(f"MODEL.WEIGHTS must name {what}; got {cfg.MODEL.WEIGHTS!r}")


def get_aamn_cfg(config_file=None, opts=()):
    """detectron2 defaults + the AAMN keys, merged with ``config_file`` and ``opts``, checked
    (``check_cfg_values``).

    The file and every ``_BASE_`` it reaches are read as plain YAML (``read_config_chain``): a
    tag that constructs a Python object (``!!python/object/apply:...``) is refused before
    anything is constructed.  Raises ``ConfigError`` naming the file (or the command-line
    override) and the offending key instead of yacs' bare assertion.
    """
    from detectron2.config import get_cfg

    from .modeling.meta_arch import MODEL_CONFIGS  # the models' keys live beside the models

    cfg = get_cfg()
    for add_config in MODEL_CONFIGS:
        add_config(cfg)
    if config_file:
        read_config_chain(config_file)
        try:
            cfg.merge_from_file(config_file, allow_unsafe=False)
        except (KeyError, AssertionError, ValueError) as e:
            raise ConfigError(f"{config_file}: {_explain(e)}") from None
        except TypeError:  # yaml.safe_load gave None or a list
            raise ConfigError(
                f"{config_file}: not a YAML mapping of config keys (empty, or a list)"
            ) from None
    if opts:
        try:
            cfg.merge_from_list(list(opts))
        except (KeyError, AssertionError, ValueError) as e:
            raise ConfigError(f"command-line override {list(opts)}: {_explain(e)}") from None
    check_cfg_values(cfg)
    return cfg


def migrate_renamed_keys(data: dict) -> dict:
    """A recorded config (plain YAML data) with its keys that were renamed since it was written
    (``RENAMED_KEYS``) under their new names, in place; a key whose new form is not a plain key
    (it became another kind of setting) is dropped.  Returns ``data``."""
    for old, new in RENAMED_KEYS.items():
        *path, name = old.split(".")
        node = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or name not in node:
            continue
        value = node.pop(name)
        if re.fullmatch(r"[A-Z0-9_]+(\.[A-Z0-9_]+)+", new):
            *path, name = new.split(".")
            node = data
            for part in path:
                node = node.setdefault(part, {})
            node.setdefault(name, value)
    return data


def config_from_text(text: str, what: str = "config", opts=()):
    """``get_aamn_cfg`` of a config held as text (a checkpoint's or a proposal file's record of
    the config it was made with), read as plain YAML like a file; errors name ``what``.  Keys
    renamed since the record was written are read under their new names
    (``migrate_renamed_keys``): a record is not the user's file to correct."""
    import tempfile

    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{what}: not valid YAML ({e})") from None
    if isinstance(data, dict):
        text = yaml.safe_dump(migrate_renamed_keys(data), sort_keys=False)
    fd, path = tempfile.mkstemp(suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            return get_aamn_cfg(path, opts)
        except ConfigError as e:
            raise ConfigError(str(e).replace(path, what)) from None
    finally:
        os.remove(path)


def read_config_chain(config_file, _chain=()):
    """Read ``config_file`` and every ``_BASE_`` it names (resolved as fvcore resolves them) as
    plain YAML, without merging; returns the files in the order they are read.

    Raises ``ConfigError`` naming the file: it does not exist or cannot be read, it is not valid
    YAML, it holds a tag that would construct a Python object (yacs' loader would run it), or its
    ``_BASE_`` chain comes back to a file of the chain (naming the cycle).
    """
    import yaml

    path = os.path.abspath(os.path.expanduser(os.fspath(config_file)))
    if path in _chain:
        cycle = " -> ".join(list(_chain[_chain.index(path) :]) + [path])
        raise ConfigError(f"the _BASE_ of the config files form a cycle: {cycle}")
    if not os.path.isfile(path):
        if _chain:
            raise ConfigError(f"{_chain[-1]}: cannot read its _BASE_ {path}: it does not exist")
        raise ConfigError(f"config file {config_file!r} does not exist")
    check_config_size(path)
    try:
        with open(path, encoding="utf-8") as f:
            loader = yaml.SafeLoader(f)
            try:  # composed once: measured, then constructed (yaml.safe_load's two steps)
                node = loader.get_single_node()
                check_config_expansion(node, path)
                data = loader.construct_document(node) if node is not None else None
            finally:
                loader.dispose()
    except yaml.constructor.ConstructorError as e:
        tag = re.search(r"tag '([^']*)'", str(e))
        raise ConfigError(
            f"{path}: refused the YAML tag {tag.group(1) if tag else '?'!r} "
            f"({' '.join(str(e.problem_mark).split())}): a config holds plain values only, and "
            "a tag that constructs a Python object would run code"
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the config file {path}: {e}") from None
    if data is None or not isinstance(data, dict):
        raise ConfigError(f"{path}: not a YAML mapping of config keys (empty, or a list)")
    files = [path]
    base = data.get("_BASE_")
    if base:
        base = os.path.expanduser(str(base))
        if not base.startswith("/"):
            base = os.path.join(os.path.dirname(path), base)
        files = read_config_chain(base, _chain + (path,)) + files
    return files


# The largest config file read, in bytes (``$AAMN_CONFIG_MAX_BYTES``): a config of keys is a few
# kB, and YAML's parser takes over a minute and gigabytes on a file of megabytes.
CONFIG_MAX_BYTES = 1 << 20
# The most YAML nodes a config may expand to with its aliases (``*name``) followed
# (``$AAMN_CONFIG_MAX_NODES``): nested aliases expand exponentially, and detectron2 writes the
# expanded config out (``default_setup``), so a 515-byte file would hang a run.
CONFIG_MAX_NODES = 100_000


def _limit(env: str, default: int) -> int:
    text = os.environ.get(env, "")
    try:
        value = int(text) if text else default
    except ValueError:
        raise ConfigError(f"${env} must be a whole number, got {text!r}") from None
    if value < 1:
        raise ConfigError(f"${env} must be at least 1, got {value}")
    return value


def check_config_size(path: str) -> None:
    """``ConfigError`` naming ``path`` when it is larger than ``CONFIG_MAX_BYTES`` (or
    ``$AAMN_CONFIG_MAX_BYTES``), before it is parsed."""
    limit = _limit("AAMN_CONFIG_MAX_BYTES", CONFIG_MAX_BYTES)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise ConfigError(f"cannot read the config file {path}: {e}") from None
    if size > limit:
        raise ConfigError(
            f"{path}: {size} bytes; a config file may hold at most {limit} "
            "(set $AAMN_CONFIG_MAX_BYTES to read a larger one)"
        )


def check_config_expansion(node, path: str) -> None:
    """``ConfigError`` naming ``path`` when the composed YAML ``node`` expands, aliases followed,
    to more than ``CONFIG_MAX_NODES`` nodes (``$AAMN_CONFIG_MAX_NODES``).  Each node is counted
    once with its expanded size (memoised), so a bomb of nested aliases is measured in linear
    time without being expanded."""
    import yaml

    limit = _limit("AAMN_CONFIG_MAX_NODES", CONFIG_MAX_NODES)
    sizes = {}

    def size(n) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        sizes[id(n)] = 1  # a node reached again inside itself (a recursive alias) counts once
        total = 1
        if isinstance(n, yaml.SequenceNode):
            total += sum(size(c) for c in n.value)
        elif isinstance(n, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in n.value)
        sizes[id(n)] = total
        return total

    if node is not None and size(node) > limit:
        raise ConfigError(
            f"{path}: its YAML aliases expand to {size(node)} values, more than the {limit} a "
            "config may hold (set $AAMN_CONFIG_MAX_NODES to read it)"
        )


# Values of MODEL.DEVICE: "cpu", "cuda" or "cuda:<index>".
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def check_cfg_values(cfg) -> None:
    """Raise ``ConfigError`` naming the key of a value no run can use (sizes, bounds, choices that
    would otherwise fail deep inside a run, or be silently reinterpreted)."""
    if not _DEVICE.match(str(cfg.MODEL.DEVICE)):
        raise ConfigError(
            f"MODEL.DEVICE must be 'cpu', 'cuda' or 'cuda:<index>', got {cfg.MODEL.DEVICE!r}"
        )
    sizes = cfg.INPUT.MIN_SIZE_TRAIN
    for key, values, least in (
        ("INPUT.MIN_SIZE_TRAIN", list(sizes) if isinstance(sizes, (list, tuple)) else [sizes], 1),
        ("INPUT.MIN_SIZE_TEST", [cfg.INPUT.MIN_SIZE_TEST], 0),
        ("INPUT.MAX_SIZE_TRAIN", [cfg.INPUT.MAX_SIZE_TRAIN], 1),
        ("INPUT.MAX_SIZE_TEST", [cfg.INPUT.MAX_SIZE_TEST], 1),
        ("INPUT.FIXED_SIZE", [cfg.INPUT.FIXED_SIZE], 0),
        ("INPUT.QUERY_MAX_LENGTH", [cfg.INPUT.QUERY_MAX_LENGTH], 1),
        ("INPUT.CLIP.HALF_LENGTH", [cfg.INPUT.CLIP.HALF_LENGTH], 0),
        ("INPUT.CLIP.NUM_PROPOSALS", [cfg.INPUT.CLIP.NUM_PROPOSALS], 1),
        ("SOLVER.MAX_ITER", [cfg.SOLVER.MAX_ITER], 1),
        ("SOLVER.IMS_PER_BATCH", [cfg.SOLVER.IMS_PER_BATCH], 1),
        ("TEST.VIDEO.BATCH_SIZE", [cfg.TEST.VIDEO.BATCH_SIZE], 1),
    ):
        if not values or any(not isinstance(v, (int, float)) or v < least for v in values):
            what = "a size" if least == 0 else "a positive number"
            shown = values[0] if len(values) == 1 else values
            raise ConfigError(f"{key} must be {what} (at least {least}), got {shown!r}")
    bound = cfg.INPUT.FLOW.BOUND
    if not isinstance(bound, (int, float)) or not math.isfinite(bound) or bound <= 0:
        raise ConfigError(
            f"INPUT.FLOW.BOUND must be a positive number of pixels (the flow cache's quantisation "
            f"bound), got {bound!r}"
        )
    period = cfg.SOLVER.CHECKPOINT_PERIOD
    if not isinstance(period, int) or period < 1:
        raise ConfigError(
            f"SOLVER.CHECKPOINT_PERIOD must be a whole number of iterations (at least 1; larger "
            f"than SOLVER.MAX_ITER for no periodic checkpoint), got {period!r}"
        )
    link = cfg.TEST.VIDEO.LINK_WEIGHT
    if not isinstance(link, (int, float)) or not math.isfinite(link) or link < 0:
        raise ConfigError(
            f"TEST.VIDEO.LINK_WEIGHT must be a number of at least 0 (the weight of the IoU with "
            f"the previous clip's box; 0 links nothing), got {link!r}"
        )
    from .data.flow import FLOW_METHODS

    check_choice("INPUT.FLOW.METHOD", cfg.INPUT.FLOW.METHOD, FLOW_METHODS)
    check_choice("TEST.VIDEO.STEP", cfg.TEST.VIDEO.STEP, ("clip", "frame"))


def check_device(cfg) -> None:
    """Raise ``ConfigError`` when ``MODEL.DEVICE`` names a CUDA device this machine lacks (a run
    never falls back to the CPU without being asked)."""
    import torch

    device = str(cfg.MODEL.DEVICE)
    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise ConfigError(
            f"MODEL.DEVICE is {device!r} but CUDA is not available on this machine; pass "
            "MODEL.DEVICE cpu to run on the CPU"
        )
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"MODEL.DEVICE is {device!r} but this machine has {torch.cuda.device_count()} CUDA "
            "device(s)"
        )


def _explain(err):
    msg = str(err.args[0]) if err.args else str(err)
    if "Non-existent" in msg:
        key = msg.split(":", 1)[-1].strip()
        if key in RENAMED_KEYS:
            return f"config key {key} was renamed to {RENAMED_KEYS[key]}"
        return (
            f"unknown config key {key} "
            "(see aamn/config.py and detectron2/config/defaults.py for the keys)"
        )
    return msg
