"""The four lecture experiments, one config each in configs/lectures/ and
one script each; this runs any of them, or all:

    saturation       8-layer sigmoid / tanh MLPs under N(0, 1), constant, tiny-normal and Glorot
                     init: per-layer gradient norms and learning curves (vanishing gradients)
    nonlinearities   sigmoid, tanh, hardtanh, softsign, relu, leaky_relu at the same budget
    optimizers       our sgd ... adam next to optax's, and SGD learning-rate schedules
    regularization   none, L2, dropout, early stopping, input noise, batch norm: train/val gap

    python scripts/lecture_experiments.py all
    python scripts/lecture_experiments.py optimizers --quick --epochs 1 --docs-dir /tmp/docs

Each variant becomes a run folder runs/lectures/<experiment>/<variant>/; the tables, the command
and what we saw go to docs/experiments/<experiment>.md, the figures next to it.
"""

import sys

from lecture_common import main
from lecture_nonlinearities import nonlinearities
from lecture_optimizers import optimizers
from lecture_regularization import regularization
from lecture_saturation import saturation

EXPERIMENTS = {
    "saturation": saturation,
    "nonlinearities": nonlinearities,
    "optimizers": optimizers,
    "regularization": regularization,
}

if __name__ == "__main__":
    sys.exit(main(EXPERIMENTS))
