"""The PTB LSTM's output-layer products and softmax timed alone, in JAX and in PyTorch: are the
products themselves slower than PyTorch's, or what XLA fuses around them? (docs/performance.md,
"Recurrent LMs and the CNN on a second machine".)

    python benchmarks/probe_output_layer.py jax
    python benchmarks/probe_output_layer.py torch     # needs the optional PyTorch (2 threads)

Prints, for each operation, the median over 5 rounds of 20 calls of the milliseconds a call
(``timing.time_calls``: the operations round-robin; one jitted call each in JAX; operands of
ones); writes nothing.
"""

from __future__ import annotations

from timing import time_calls

from lecturenn.cli import Parser

# (rows, inner) x (inner, cols): the PTB-small LSTM's 20 steps x 20 streams = 400 rows, 200
# hidden units, 10,000 words; and one recurrent product (20 streams, 400 inputs, 4 x 200 gates)
PRODUCTS = {
    "logits = h . U": ((400, 200), (200, 10000)),
    "dU = h^T . dlogits": ((200, 400), (400, 10000)),
    "dh = dlogits . U^T": ((400, 10000), (10000, 200)),
    "recurrent gates": ((20, 400), (400, 800)),
}
SOFTMAX = (400, 10000)


def jax_calls() -> dict:
    import jax
    import jax.numpy as jnp

    import lecturenn  # noqa: F401  (its XLA and malloc defaults, as in training)

    fns = {}
    product = jax.jit(lambda a, b: a @ b)
    for name, (a, b) in PRODUCTS.items():
        x, y = jnp.ones(a, jnp.float32), jnp.ones(b, jnp.float32)
        fns[name] = lambda x=x, y=y: product(x, y)
    softmax = jax.jit(jax.nn.softmax)
    scores = jnp.ones(SOFTMAX, jnp.float32)
    fns["softmax"] = lambda: softmax(scores)
    return fns


def torch_calls() -> dict:
    import torch

    torch.set_num_threads(2)
    fns = {}
    for name, (a, b) in PRODUCTS.items():
        x, y = torch.ones(a), torch.ones(b)
        fns[name] = lambda x=x, y=y: x @ y
    scores = torch.ones(SOFTMAX)
    fns["softmax"] = lambda: torch.softmax(scores, -1)
    return fns


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("library", choices=["jax", "torch"])
    args = parser.parse_args()
    fns = jax_calls() if args.library == "jax" else torch_calls()
    for name, seconds in time_calls(fns, repeats=5, number=20).items():
        print(f"{args.library:5s} {name:20s} {1e3 * seconds:7.3f} ms")


if __name__ == "__main__":
    main()
