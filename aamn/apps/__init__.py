"""What uses a trained model, apart from training it (detectron2 keeps its ``demo/`` apart from its
``engine``): batch inference over many videos (``batch_inference``, ``tools/infer.py``), the page
in the browser (``web_demo``, ``tools/web_demo.py``) and the data-set drawing tools
(``drawing_tools``, ``tools/visualize.py``, ``tools/visualize_tubes.py``).  Each builds on
``aamn.engine.VideoPredictor`` or the data-set mappers; nothing in ``aamn.engine`` imports them."""
