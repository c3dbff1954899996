"""lecturenn: the neural-network lectures as a JAX library with hand-written backprop.

from lecturenn import load_run
run = load_run("runs/ner_window")   # run.model, run.params, run.state, run.vocabs, run.config
"""

from lecturenn._malloc import apply_defaults as _apply_malloc_defaults
from lecturenn._xla import apply_defaults as _apply_xla_defaults

__version__ = "0.1.0"

_apply_xla_defaults()  # before JAX starts its backend: lecturenn/_xla.py
_apply_malloc_defaults()  # keep the memory a compiled step frees: lecturenn/_malloc.py


def load_run(path):
    """A trained run folder, read from the folder alone: its config, model, best parameters and
    state, vocabularies and summary (``lecturenn.experiments.inference.Run``)."""
    from lecturenn.experiments.inference import load_run as load

    return load(path)
