"""Task plugins for the runner: ``build(cfg) -> Setup`` prepares a task's device data, its model
(the model config filled with what comes from the data) and its evaluation (see ``Setup`` in
experiments/runner.py).
"""

from lecturenn.experiments.tasks import adding, classify, language, tagging

TASKS = {"classify": classify, "lm": language, "adding": adding, "tag": tagging}
