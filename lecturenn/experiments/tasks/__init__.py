"""Task plugins for the runner. A task module registers its model kinds and data sets (their
config dataclasses, via experiments/schemas.py decorators) at import time and provides

    build(cfg) -> Setup

(see ``Setup`` in experiments/runner.py). Top-level imports of task modules stay light (no jax):
``lecturenn run`` validates the config before anything heavy is imported.
"""

from lecturenn.experiments.tasks import adding, classify, language, tagging

TASKS = {"classify": classify, "lm": language, "adding": adding, "tag": tagging}
