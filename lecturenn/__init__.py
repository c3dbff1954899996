"""lecturenn: the neural-network lectures as a JAX library with hand-written backprop."""

__version__ = "0.1.0"
