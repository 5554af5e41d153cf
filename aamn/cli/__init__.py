"""The project's command lines as modules: ``python -m aamn.cli.<name>`` is ``tools/<name>.py``
(``train_net``, ``demo``, ``visualize``, ``visualize_tubes``, ``plot_curves``) or
``datasets/<name>.py`` (``prepare_synthetic``, ``prepare_flow``, ``prepare_proposals``).  The
scripts there are thin wrappers; the package's own jobs (the main job, the benchmark) run these
modules, never a script of the repository."""
