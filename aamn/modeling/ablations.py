"""The ablation models of the paper's Table IV as config overrides, and the check of the ablation
keys.

``ABLATIONS`` maps each of the 14 row names of Table IV ("Ablation study on A2D Sentences", in the
table's order) to its overrides, a flat ``[KEY, VALUE, KEY, VALUE, ...]`` list of strings as
``CfgNode.merge_from_list`` and the ``opts`` of the tools take them.  Every row is a config switch
on the same code; applied to a config of the full model it gives that row's model::

    from aamn.modeling.ablations import ABLATIONS
    for name, opts in ABLATIONS.items():
        cfg = get_aamn_cfg(config_file, opts)   # aamn.config
        ...

Rows 1-7 are the module ablations ("Study of Ablation Models"), rows 8-13 the placement of the
optical flow ("Impact of Optical Flow on Different Components"), row 14 the full model:

==  ======================================  ========================================================
 1  Baseline Model                          MATCHING baseline: ``[v_k, f_k]``, mean word embedding,
                                            Eq. (6) score
 2  AAMN w/o Actor Module                   USE_ACTOR_MODULE False
 3  AAMN w/o Action Module                  USE_ACTION_MODULE False
 4  AAMN w/o Location Feature               USE_LOCATION False
 5  AAMN w/o Contextual LSTM                CONTEXT_LSTM False
 6  AAMN w/o Attention                      CONTEXT_ATTENTION False (mean pooling of the states)
 7  AAMN w/o Gated Fusion                   GATED_FUSION False (concatenation)
 8  AAMN w/o Flow Stream                    USE_FLOW False, NO_FLOW_MOTION_FEATURE rgb (``v_k``
                                            replaces ``f_k``), INPUT.FLOW.ENABLED False
 9  AAMN w/o RGB Stream                     USE_RGB False, LINK_FEATURE flow (``f_k`` replaces
                                            ``v_k`` everywhere)
10  AAMN (FCN) w/o Optical Flow             MASK_HEAD.USE_FLOW False
11  AAMN (Action Module) w/o Optical Flow   ACTION_FEATURES rgb (``[v_k, v_c]`` only)
12  AAMN (Action Module) w/o RGB            ACTION_FEATURES flow (``f_k`` only)
13  AAMN (Actor Module) w/ Optical Flow     ACTOR_USES_FLOW True (``[v_k, f_k, l_k]``)
14  AAMN (Full Model)                       (none)
==  ======================================  ========================================================

(keys under ``MODEL.AAMN`` unless written in full).  The switches are orthogonal: each changes one
part of the model and combinations build when they make sense.  ``check_ablation_config`` rejects
the combinations that cannot be built or where a switch would have no effect, with a message that
names the keys; the AAMN meta-architecture calls it before building anything.

``ABLATION_TABLES`` holds every ablation table of the paper the same way (Tables I-III: K and L,
IV: the rows above, V: Eq. (1)'s feature, VI: temporal aggregation, VII: training strategies,
VIII: lambda, IX: random word attention); Tables X-XIII compare methods and protocols (the
evaluator's tasks, the comparison systems' configs).
"""

from typing import Dict, List

from detectron2.config import get_cfg

from aamn.config import ConfigError

from .action_module import ACTION_FEATURES
from .tube_linking import LINK_FEATURES

__all__ = [
    "ABLATIONS",
    "ABLATION_TABLES",
    "MATCHING_MODES",
    "NO_FLOW_MOTION_FEATURES",
    "ablation_overrides",
    "check_ablation_config",
    "flow_features_used",
]

# MODEL.AAMN.MATCHING: "modular" = the actor and action modules (AAMN), "baseline" = Table IV's
# "Baseline Model".
MATCHING_MODES = ("modular", "baseline")
# MODEL.AAMN.NO_FLOW_MOTION_FEATURE.
NO_FLOW_MOTION_FEATURES = ("rgb", "none")

ABLATIONS: Dict[str, List[str]] = {
    "Baseline Model": ["MODEL.AAMN.MATCHING", "baseline"],
    "AAMN w/o Actor Module": ["MODEL.AAMN.USE_ACTOR_MODULE", "False"],
    "AAMN w/o Action Module": ["MODEL.AAMN.USE_ACTION_MODULE", "False"],
    "AAMN w/o Location Feature": ["MODEL.AAMN.USE_LOCATION", "False"],
    "AAMN w/o Contextual LSTM": ["MODEL.AAMN.CONTEXT_LSTM", "False"],
    "AAMN w/o Attention": ["MODEL.AAMN.CONTEXT_ATTENTION", "False"],
    "AAMN w/o Gated Fusion": ["MODEL.AAMN.GATED_FUSION", "False"],
    # The single-stream row: no Flow stream, v_k stands in for f_k in the action module; the data
    # pipeline need not read the flow cache.
    "AAMN w/o Flow Stream": [
        "MODEL.AAMN.USE_FLOW",
        "False",
        "MODEL.AAMN.NO_FLOW_MOTION_FEATURE",
        "rgb",
        "INPUT.FLOW.ENABLED",
        "False",
    ],
    # The Flow-only row: f_k replaces v_k in both modules, v_0, the linking feature and the mask
    # head (the RGB frames only give the frame sizes).
    "AAMN w/o RGB Stream": ["MODEL.AAMN.USE_RGB", "False", "MODEL.AAMN.LINK_FEATURE", "flow"],
    "AAMN (FCN) w/o Optical Flow": ["MODEL.AAMN.MASK_HEAD.USE_FLOW", "False"],
    "AAMN (Action Module) w/o Optical Flow": ["MODEL.AAMN.ACTION_FEATURES", "rgb"],
    "AAMN (Action Module) w/o RGB": ["MODEL.AAMN.ACTION_FEATURES", "flow"],
    "AAMN (Actor Module) w/ Optical Flow": ["MODEL.AAMN.ACTOR_USES_FLOW", "True"],
    "AAMN (Full Model)": [],
}


def _rows(key: str, values, label: str) -> Dict[str, List[str]]:
    return {f"{label} = {v}": [key, str(v)] for v in values}


# Every ablation table of the paper as rows of config overrides on the same base config
# (``tools/run_ablations.py --table ID`` trains every row).  Tables I and II are the same runs
# (I reports the localisation precision of the evaluator's "loc" task, II the segmentation);
# Table III's rows are the paper's L = 0, 2, 4, 8 and L = 1 (the synthetic configs' L).
ABLATION_TABLES: Dict[str, Dict[str, List[str]]] = {
    "I": _rows("INPUT.CLIP.NUM_PROPOSALS", (2, 4, 6, 8, 10, 12), "K"),
    "II": _rows("INPUT.CLIP.NUM_PROPOSALS", (2, 4, 6, 8, 10, 12), "K"),
    "III": _rows("INPUT.CLIP.HALF_LENGTH", (0, 1, 2, 4, 8), "L"),
    "IV": ABLATIONS,
    # The feature of Eq. (1)'s semantic term.
    "V": {
        "Flow": ["MODEL.AAMN.LINK_FEATURE", "flow"],
        "RGB": ["MODEL.AAMN.LINK_FEATURE", "rgb"],
        "Flow+RGB": ["MODEL.AAMN.LINK_FEATURE", "both"],
    },
    # Temporal aggregation: the plain average against Eq. (2).
    "VI": {
        "Average": ["MODEL.AAMN.TEMPORAL_AGGREGATION", "mean"],
        "Ours": ["MODEL.AAMN.TEMPORAL_AGGREGATION", "eq2"],
    },
    # Training strategies (MODEL.AAMN.PHASE_SPLIT sets where the second phase starts).
    "VII": {
        "M+S": ["MODEL.AAMN.TRAINING_STRATEGY", "M+S"],
        "S+M": ["MODEL.AAMN.TRAINING_STRATEGY", "S+M"],
        "Joint": ["MODEL.AAMN.TRAINING_STRATEGY", "joint"],
    },
    # Eq. (10)'s lambda.
    "VIII": _rows(
        "MODEL.AAMN.MASK_LOSS_WEIGHT", (0.01, 0.1, 1.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0), "lambda"
    ),
    # Random word attention at test time against the learned one.
    "IX": {
        "Random": ["MODEL.AAMN.RANDOM_WORD_ATTENTION", "True"],
        "Ours": ["MODEL.AAMN.RANDOM_WORD_ATTENTION", "False"],
    },
}


def ablation_overrides(name: str) -> List[str]:
    """The overrides of the Table IV row ``name`` (a copy of ``ABLATIONS[name]``).

    Raises ``KeyError`` listing the row names for an unknown name.
    """
    if name not in ABLATIONS:
        raise KeyError(f"Unknown Table IV row {name!r}; the rows are {list(ABLATIONS)}")
    return list(ABLATIONS[name])


# Switches of the actor / action modules: "baseline" matching has neither module, so a value other
# than the default would silently do nothing.
_MODULAR_SWITCHES = (
    "USE_ACTOR_MODULE",
    "USE_ACTION_MODULE",
    "USE_LOCATION",
    "CONTEXT_LSTM",
    "CONTEXT_ATTENTION",
    "GATED_FUSION",
    "NO_FLOW_MOTION_FEATURE",
    "ACTION_FEATURES",
    "ACTOR_USES_FLOW",
)


def flow_features_used(cfg) -> bool:
    """Whether any part of AAMN's matching uses the Flow per-proposal / tube features ``f``
    (otherwise the Flow stream only feeds the mask head, and ``f`` is neither computed nor
    parameterised).  The one statement of this rule."""
    A = cfg.MODEL.AAMN
    if not A.USE_FLOW:
        return False
    return bool(
        not A.USE_RGB
        or A.LINK_FEATURE in ("flow", "both")
        or A.MATCHING == "baseline"
        or (A.USE_ACTION_MODULE and A.ACTION_FEATURES != "rgb")
        or (A.USE_ACTOR_MODULE and A.ACTOR_USES_FLOW)
    )


def _defaults():
    from .meta_arch.aamn_config import add_aamn_config  # the model package imports this one

    return add_aamn_config(get_cfg()).MODEL.AAMN


def check_ablation_config(cfg) -> None:
    """Check the ablation keys of ``cfg.MODEL.AAMN`` together.

    Raises:
        ConfigError (a ``ValueError``) listing every problem, each naming its keys: an unknown
        value of ``MATCHING`` / ``ACTION_FEATURES`` / ``NO_FLOW_MOTION_FEATURE`` /
        ``LINK_FEATURE``; a combination that cannot be built (no stream, a feature of a stream
        that is off, no module, a mask head without input); a switch that would have no effect
        (a module switch with ``MATCHING = "baseline"``, ``ACTION_FEATURES`` without the action
        module, the contextual LSTM / fusion switches without the feature they act on,
        ``ACTOR_USES_FLOW`` without the actor module).
    """
    A = cfg.MODEL.AAMN
    errors = []

    def enum(key, choices):
        value = A.get(key)
        if value not in choices:
            errors.append(f"Unknown MODEL.AAMN.{key} {value!r}; choose from {choices}")

    enum("MATCHING", MATCHING_MODES)
    enum("ACTION_FEATURES", ACTION_FEATURES)
    enum("NO_FLOW_MOTION_FEATURE", NO_FLOW_MOTION_FEATURES)
    enum("LINK_FEATURE", LINK_FEATURES)
    if errors:
        raise ConfigError("; ".join(errors))

    rgb, flow = bool(A.USE_RGB), bool(A.USE_FLOW)
    if flow and not cfg.INPUT.FLOW.ENABLED:
        errors.append("MODEL.AAMN.USE_FLOW=True needs the flow clips: set INPUT.FLOW.ENABLED True")
    # Streams (Table IV rows 8-9, Table V).
    if not (rgb or flow):
        errors.append(
            "MODEL.AAMN.USE_RGB and MODEL.AAMN.USE_FLOW cannot both be False: the model needs a "
            "stream"
        )
    else:
        if A.LINK_FEATURE in ("flow", "both") and not flow:
            errors.append(
                f"MODEL.AAMN.LINK_FEATURE={A.LINK_FEATURE!r} needs MODEL.AAMN.USE_FLOW=True"
            )
        if A.LINK_FEATURE in ("rgb", "both") and not rgb:
            errors.append(
                f"MODEL.AAMN.LINK_FEATURE={A.LINK_FEATURE!r} needs MODEL.AAMN.USE_RGB=True (the "
                "Flow-only model links with MODEL.AAMN.LINK_FEATURE 'flow')"
            )
        if not rgb and not A.MASK_HEAD.USE_FLOW:
            errors.append(
                "MODEL.AAMN.MASK_HEAD.USE_FLOW=False leaves the mask head without input when "
                "MODEL.AAMN.USE_RGB=False"
            )

    if A.MATCHING == "baseline":
        defaults = _defaults()
        changed = [k for k in _MODULAR_SWITCHES if A.get(k) != defaults.get(k)]
        if changed:
            errors.append(
                "MODEL.AAMN.MATCHING='baseline' has no actor or action module, so "
                + ", ".join(f"MODEL.AAMN.{k}={A.get(k)!r}" for k in changed)
                + " would have no effect; keep the default(s) or use MATCHING 'modular'"
            )
        if A.RANDOM_WORD_ATTENTION:
            errors.append(
                "MODEL.AAMN.RANDOM_WORD_ATTENTION replaces the learned word attention, which "
                "MODEL.AAMN.MATCHING='baseline' does not have (its query is the mean word "
                "embedding)"
            )
    else:
        if not (A.USE_ACTOR_MODULE or A.USE_ACTION_MODULE):
            errors.append("MODEL.AAMN.USE_ACTOR_MODULE and USE_ACTION_MODULE cannot both be False")
        features = A.ACTION_FEATURES
        if features != "both":
            if not A.USE_ACTION_MODULE:
                errors.append(
                    f"MODEL.AAMN.ACTION_FEATURES={features!r} configures the action module, which "
                    "MODEL.AAMN.USE_ACTION_MODULE=False removes"
                )
            if features == "flow" and not flow:
                errors.append(
                    "MODEL.AAMN.ACTION_FEATURES='flow' needs the Flow stream "
                    "(MODEL.AAMN.USE_FLOW=True)"
                )
            if features == "rgb" and not rgb:
                errors.append(
                    "MODEL.AAMN.ACTION_FEATURES='rgb' needs the RGB stream "
                    "(MODEL.AAMN.USE_RGB=True); "
                    "without it the appearance feature is the Flow feature"
                )
            if A.USE_ACTION_MODULE:
                # Switches acting on a part of the action module that this choice removes.
                idle = (
                    ["GATED_FUSION"]
                    if features == "rgb"
                    else ["CONTEXT_LSTM", "CONTEXT_ATTENTION", "GATED_FUSION"]
                )
                off = [k for k in idle if not A.get(k)]
                if off:
                    what = (
                        "no fusion"
                        if features == "rgb"
                        else "no appearance feature, context or fusion"
                    )
                    errors.append(
                        f"MODEL.AAMN.ACTION_FEATURES={features!r} leaves the action module with "
                        f"{what}, so "
                        + ", ".join(f"MODEL.AAMN.{k}=False" for k in off)
                        + " would have no effect"
                    )
        if A.ACTOR_USES_FLOW:
            if not A.USE_ACTOR_MODULE:
                errors.append(
                    "MODEL.AAMN.ACTOR_USES_FLOW=True needs the actor module "
                    "(MODEL.AAMN.USE_ACTOR_MODULE)"
                )
            if not flow:
                errors.append(
                    "MODEL.AAMN.ACTOR_USES_FLOW=True needs the Flow stream "
                    "(MODEL.AAMN.USE_FLOW=True)"
                )
            if not rgb:
                errors.append(
                    "MODEL.AAMN.ACTOR_USES_FLOW=True adds f_k to v_k, but with "
                    "MODEL.AAMN.USE_RGB=False v_k "
                    "already is f_k"
                )
    if errors:
        raise ConfigError("Invalid AAMN ablation config: " + "; ".join(errors))
