"""Per-layer diagnostics the lectures use to explain training trouble (CMU slides; CS224n
notes §2.4):

- gradient norms per weight matrix — vanishing (early layers ≪ late layers) or exploding;
- activation saturation — the share of sigmoid/tanh units stuck near their asymptotes, where
  f′ ≈ 0 and no gradient flows; the share of dead (zero) ReLU units;
- activation histograms per layer (Glorot & Bengio 2010, fig. 6 style).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lecturenn.optim.regularize import weight_mask

# |a| beyond which a unit counts as saturated, by activation: its derivative is then < ~0.1
SATURATION = {
    "sigmoid": lambda a: (a < 0.05) | (a > 0.95),
    "tanh": lambda a: jnp.abs(a) > 0.95,
    "hardtanh": lambda a: jnp.abs(a) >= 1.0,
    "softsign": lambda a: jnp.abs(a) > 0.75,
    "relu": lambda a: a <= 0.0,
    "leaky_relu": lambda a: a <= 0.0,
    "softplus": lambda a: a < 0.05,
}


def weight_grad_norms(grads) -> dict[str, float]:
    """‖∂J/∂W‖₂ for every weight leaf (biases excluded), keyed by pytree path."""
    mask = weight_mask(grads)
    return {
        jax.tree_util.keystr(path): float(jnp.linalg.norm(g))
        for (path, g), is_w in zip(
            jax.tree_util.tree_leaves_with_path(grads), jax.tree_util.tree_leaves(mask), strict=True
        )
        if is_w
    }


def saturation(activations: list, names: list[str]) -> list[float]:
    """Share of saturated (or dead) units per layer; NaN for activations without a rule."""
    out = []
    for a, name in zip(activations, names, strict=True):
        rule = SATURATION.get(name)
        out.append(float(jnp.mean(rule(a))) if rule else float("nan"))
    return out


def histograms(activations: list, bins: int = 40, value_range=None) -> list[dict]:
    """Per-layer histogram of activation values: {"edges", "counts"} lists for JSON."""
    out = []
    for a in activations:
        a = np.asarray(a, np.float64).ravel()
        lo, hi = value_range or (float(a.min()), float(a.max()))
        if hi - lo < 1e-6 * max(1.0, abs(hi)):
            # all units (nearly) equal, e.g. after a constant init: a narrow range around them
            lo, hi = lo - 5e-4, lo + 5e-4
        counts, edges = np.histogram(a, bins=bins, range=(lo, hi))
        out.append({"edges": edges.tolist(), "counts": counts.tolist()})
    return out


def plot_grad_norms(rows: list[dict], path) -> None:
    """Gradient norm per layer (log scale) against epoch, one line per layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(rows[0]["grad_norms"]) if rows else []
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name in layers:
        ax.semilogy([r["epoch"] for r in rows], [r["grad_norms"][name] for r in rows], label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("‖∂J/∂W‖")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_histograms(hists: list[dict], path, title: str = "") -> None:
    """One stacked panel per layer, as in Glorot & Bengio 2010."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(hists), 1, figsize=(5, 1.2 * len(hists) + 0.8), sharex=True, squeeze=False
    )
    for k, (ax, h) in enumerate(zip(axes[:, 0], hists, strict=True)):
        centres = (np.asarray(h["edges"][:-1]) + np.asarray(h["edges"][1:])) / 2
        ax.bar(centres, h["counts"], width=np.diff(h["edges"]), color="C0")
        ax.set_ylabel(f"layer {k + 1}", fontsize=7)
        ax.set_yticks([])
    axes[-1, 0].set_xlabel("activation value")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
