"""The project's command lines as modules: ``python -m aamn.cli.<name>`` is ``tools/<name>.py``
(``train_net``, ``demo``, ``infer``, ``web_demo``, ``visualize``, ``visualize_tubes``,
``plot_curves``, ``run_main_job``, ``run_ablations``, ``benchmark_model``,
``benchmark_training``, ``benchmark_video``, ``benchmark_demo``) or ``datasets/<name>.py``
(``prepare_synthetic``, ``prepare_flow``, ``prepare_proposals``).  The scripts there are thin
wrappers; the package's own jobs (the main job, the benchmark) run these modules, never a script
of the repository.  Every one ends its errors in one line (``aamn.utils.cli.run_tool``)."""
