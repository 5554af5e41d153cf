"""The AAMN meta-architecture's config keys (``MODEL.AAMN``), beside the model
(``aamn.modeling.meta_arch.aamn``)."""

from detectron2.config import CfgNode as CN

from aamn.config import add_rvos_config, adds_keys

__all__ = ["add_aamn_config"]


@adds_keys("AAMN", after=add_rvos_config)
def add_aamn_config(_C):
    """Add the shared keys (``add_rvos_config``) and ``MODEL.AAMN`` to a detectron2 config (in
    place) and return it."""
    # ------------------------------------------------------------------ AAMN meta-architecture
    _C.MODEL.AAMN = CN()
    # The registry entry (aamn.modeling.MATCHING_HEAD_REGISTRY) that scores the tubes: stream RoI
    # heads, linking (Eq. 1), aggregation (Eq. 2), actor / action modules (Eq. 3-9).
    _C.MODEL.AAMN.MATCHING_HEAD = "AAMNMatchingHead"
    # Backbone feature maps the RoIs are pooled from (one or several FPN levels).
    _C.MODEL.AAMN.IN_FEATURES = ["res4"]
    _C.MODEL.AAMN.POOLER_TYPE = "ROIAlignV2"
    _C.MODEL.AAMN.POOLER_SAMPLING_RATIO = 0
    # RoIAlign output for the matching branch (7x7) and the mask branch (14x14).
    _C.MODEL.AAMN.POOLER_RESOLUTION = 7
    _C.MODEL.AAMN.MASK_POOLER_RESOLUTION = 14
    # Cv: width of the two FC layers of the RoI box heads (paper: 4096).
    _C.MODEL.AAMN.ROI_FC_DIM = 4096
    # Cv': width of the tube features after aggregation + FC + ReLU (paper: 1024).
    _C.MODEL.AAMN.TUBE_DIM = 1024
    # Width of the joint embedding of the actor / action modules (Eq. 6, 8, 9).
    _C.MODEL.AAMN.MATCH_DIM = 512
    # Norm the two embeddings of Eq. (6) / (9) are L2-normalised to before their product: 1 is the
    # paper's; sqrt(MATCH_DIM) starts the scores at O(1) instead of ~1/MATCH_DIM of the margin,
    # which short from-scratch schedules need (see aamn.modeling.actor_module.ScoreHead).
    _C.MODEL.AAMN.MATCH_NORM_SCALE = 1.0
    # Eq. (1): linking score = IoU + RHO / (1 + ||v1 - v2||).
    _C.MODEL.AAMN.LINK_RHO = 1.0
    # Feature for the semantic term of Eq. (1): "rgb" (paper), "flow" or "both" (Table V).
    _C.MODEL.AAMN.LINK_FEATURE = "rgb"
    # Tube feature: "eq2" (key frame + mean of the others, Eq. 2) or "mean" (plain average).
    _C.MODEL.AAMN.TEMPORAL_AGGREGATION = "eq2"
    # Two streams; False = the paper's single-stream (RGB-only everywhere) row.
    _C.MODEL.AAMN.USE_FLOW = True
    # The RGB stream; False = Table IV "w/o RGB Stream": the Flow stream alone, its features f
    # replace v in both modules, in v_0 and in the mask head (needs USE_FLOW True and LINK_FEATURE
    # "flow"; the RGB frames then only give the frame sizes).
    _C.MODEL.AAMN.USE_RGB = True
    # Tube scoring: "modular" (the actor and action modules, Eq. 6-9) or "baseline" (Table IV
    # "Baseline Model": the concatenation [v_k, f_k] and the mean of the word embeddings scored in
    # the form of Eq. 6; no location, context or word attention; linking, mask head and losses as
    # AAMN).  The module switches below must keep their defaults with "baseline".
    _C.MODEL.AAMN.MATCHING = "modular"
    # Module ablations (Table IV).  aamn.modeling.ablations.ABLATIONS lists the overrides of each of
    # the table's 14 rows.
    _C.MODEL.AAMN.USE_ACTOR_MODULE = True
    _C.MODEL.AAMN.USE_ACTION_MODULE = True
    _C.MODEL.AAMN.USE_LOCATION = True
    # Table IV "(Actor Module) w/ Optical Flow": the actor module matches [v_k, f_k, l_k] instead of
    # [v_k, l_k] (needs both streams).
    _C.MODEL.AAMN.ACTOR_USES_FLOW = False
    # How the parts of the actor module's visual feature [v_k, (f_k,) l_k] are scaled before they
    # are concatenated (Eq. 6): "none" concatenates them as they are (the paper's setting), "l2"
    # (the project's default) first L2-normalises v_k (and f_k) so that the 5-d location feature
    # (norm ~1) is not swamped by tube features of norm ~10^2 (aamn/modeling/actor_module.py).
    _C.MODEL.AAMN.ACTOR_FEATURE_NORM = "l2"
    # Visual features of the action module (Table IV): "both" (the gated fusion, or concatenation,
    # of [v_k, v_c] and f_k: the paper's module), "rgb" ("(Action Module) w/o Optical Flow": [v_k,
    # v_c] alone) or "flow" ("(Action Module) w/o RGB": f_k alone, no contextual LSTM).
    _C.MODEL.AAMN.ACTION_FEATURES = "both"
    # Action module (Eq. 7-8): contextual LSTM, its attention, gated fusion (Table VI).
    _C.MODEL.AAMN.CONTEXT_LSTM = True
    _C.MODEL.AAMN.CONTEXT_ATTENTION = True  # False: mean pooling of the hidden states
    _C.MODEL.AAMN.CONTEXT_HIDDEN_DIM = 512  # Cc
    _C.MODEL.AAMN.GATED_FUSION = True  # False: concatenation + FC
    # Width of the fused action feature v_action of Eq. (8) (paper: Ce = 300).
    _C.MODEL.AAMN.FUSION_DIM = 300
    # Motion feature of the action module when USE_FLOW is False: "rgb" = the RGB tube feature
    # stands in for f (the paper's "w/o Flow Stream" row, Table IV), "none" = no fusion, the action
    # module uses [v_k, v_c] alone.
    _C.MODEL.AAMN.NO_FLOW_MOTION_FEATURE = "rgb"
    # Test time only: replace the learned word attention by random weights (Table IX).
    _C.MODEL.AAMN.RANDOM_WORD_ATTENTION = False
    # Training: the GT box replaces the lowest-scored key-frame proposal when no proposal reaches
    # this IoU with it.
    _C.MODEL.AAMN.MATCH_IOU_THRESHOLD = 0.5
    # Eq. (12) margin and the negatives used for the query side: "batch" (other queries of the
    # batch), "video" (other queries of the same video in the batch) or "none".
    _C.MODEL.AAMN.MATCH_MARGIN = 0.1
    _C.MODEL.AAMN.QUERY_NEGATIVES = "batch"
    # Eq. (12) over the negatives of each side: "mean" (averaged) or "sum" (as the equation is
    # written); either way averaged over the clips of the batch.
    _C.MODEL.AAMN.MATCH_LOSS_REDUCTION = "mean"
    # Eq. (10): lambda, the weight of the segmentation loss (Table VIII: 5.0).
    _C.MODEL.AAMN.MASK_LOSS_WEIGHT = 5.0
    # Table VII: "joint" (the paper's: Eq. 10 from the first iteration), "M+S" (the matching branch,
    # Eq. 12 alone, for the first PHASE_SPLIT x SOLVER.MAX_ITER iterations, then the FCN branch, Eq.
    # 11 alone) or "S+M" (segmentation first, then matching).  The loss of the branch that rests is
    # still computed and logged, without gradient; the shared backbones train in both phases.
    _C.MODEL.AAMN.TRAINING_STRATEGY = "joint"
    _C.MODEL.AAMN.PHASE_SPLIT = 0.5
    # Mask head (Sec. III-D): 1x1 fusion conv, NUM_CONV 3x3 convs of CONV_DIM, 2x deconv.
    _C.MODEL.AAMN.MASK_HEAD = CN()
    _C.MODEL.AAMN.MASK_HEAD.CONV_DIM = 256
    _C.MODEL.AAMN.MASK_HEAD.NUM_CONV = 3
    _C.MODEL.AAMN.MASK_HEAD.USE_FLOW = True  # False: "FCN without flow"
    # The mask RoI is the tube box grown by this factor (width and height, about its centre) and
    # clipped to the frame, in training and inference; 1.0 = the tube box
    # (aamn/modeling/mask_head.py).
    _C.MODEL.AAMN.MASK_HEAD.BOX_EXPAND = 1.0
    # The RoIs Eq. (11) trains on: "matched" = the matched tube's key-frame box (the paper),
    # "positive" = every key-frame proposal overlapping an annotated actor at IoU >=
    # MATCH_IOU_THRESHOLD, with that actor's mask (Mask R-CNN's positives; the matched box is one).
    _C.MODEL.AAMN.MASK_HEAD.TRAIN_ROIS = "matched"
    _C.MODEL.AAMN.MASK_THRESHOLD = 0.5
    # Expressions about several actors (MeViS): at inference, the union of the masks of every tube
    # scored within this margin of the selected one (s_k >= s_selected - margin; MATCH_MARGIN is
    # the margin the matching loss trains between the referred tube and the others).  A negative
    # value (the default) segments the selected tube alone (Sec. III-D).
    _C.MODEL.AAMN.TUBE_UNION_MARGIN = -1.0
    # One backbone for the proposals and the RGB stream (aamn/modeling/shared_detector.py): the
    # model holds the proposal detector (backbone, proposal_generator, roi_heads, built from this
    # config's MODEL.RPN / ROI_HEADS / ROI_BOX_HEAD / ANCHOR_GENERATOR keys, which must be those of
    # the detector that wrote the training proposal files) and finds its own proposals at
    # inference.  MODEL.WEIGHTS gives the trained detector's checkpoint when training starts.
    _C.MODEL.AAMN.SHARED_DETECTOR = CN()
    _C.MODEL.AAMN.SHARED_DETECTOR.ENABLED = False
    # False: the backbone stays the detector's (frozen: no gradient, fixed BatchNorm statistics);
    # True: fine-tuned by AAMN's losses.
    _C.MODEL.AAMN.SHARED_DETECTOR.TRAIN_BACKBONE = False
    # With TRAIN_BACKBONE: the weight of the detector's own losses (RPN and box head, on the
    # annotated actors of each clip's key frame), added to Eq. (10) so that the RPN and box head
    # train on the fine-tuned maps; 0 keeps them the detector's (they then find proposals on maps
    # they were not trained on: BENCHMARKS.md measures both).
    _C.MODEL.AAMN.SHARED_DETECTOR.DETECTOR_LOSS_WEIGHT = 1.0
    # The class-agnostic NMS of the detections before the top INPUT.CLIP.NUM_PROPOSALS (the
    # proposal files' --nms).
    _C.MODEL.AAMN.SHARED_DETECTOR.NMS_THRESH = 0.7
