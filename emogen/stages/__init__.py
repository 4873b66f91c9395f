"""One entry module per DVC stage, named after it; each has ``run(params, layout)`` (the baselines:
``run_prompt``, ``run_textual_inversion``, ``run_dreambooth``), which is what ``emogen stage <name>`` calls."""
