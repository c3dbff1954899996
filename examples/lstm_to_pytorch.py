"""Take a trained LSTM language model to PyTorch: export its weights (safetensors), load them into
``torch.nn.Embedding`` + ``torch.nn.LSTM`` + ``torch.nn.Linear``, and check that both frameworks
give the same log-likelihood to a text.

    lecturenn run configs/char_shakespeare.toml --out runs/char_shakespeare
    pip install torch==2.13.0 -e ".[export]"
    python examples/lstm_to_pytorch.py runs/char_shakespeare "ROMEO: What light"

lecturenn's layout is the row-vector one (z = x W + b): an LSTM layer's W_x is (inputs, 4H) with
the gate blocks i, f, g, o — PyTorch's gate order — so PyTorch's weight_ih is W_xᵀ, weight_hh is
W_hᵀ, bias_ih is b and bias_hh is b_h (``model.recurrent_bias``) or 0. The output layer is
Linear(H, V) with weight Uᵀ (or the embedding itself when the model ties them).
"""

import json
import sys
from pathlib import Path

import jax
import numpy as np
import torch
from safetensors.numpy import load_file

from lecturenn import load_run
from lecturenn.experiments.export import export_run
from lecturenn.models import rnn_lm


def torch_model(arrays: dict, cfg: dict) -> torch.nn.Module:
    """The exported arrays as a PyTorch module returning logits (T, V) for ids (T,)."""
    tensor = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in arrays.items()}
    vocab, embed, hidden, layers = (
        cfg["vocab_size"],
        tensor["embed"].shape[1],
        cfg["hidden_dim"],
        cfg["num_layers"],
    )

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(vocab, embed)
            self.lstm = torch.nn.LSTM(embed, hidden, num_layers=layers)
            self.out = torch.nn.Linear(hidden, vocab)

        def forward(self, ids):
            h, _ = self.lstm(self.embed(ids)[:, None, :])  # (T, batch 1, H)
            return self.out(h[:, 0])

    model = LM()
    with torch.no_grad():
        model.embed.weight.copy_(tensor["embed"])
        for layer in range(layers):
            getattr(model.lstm, f"weight_ih_l{layer}").copy_(tensor[f"layers.{layer}.Wx"].T)
            getattr(model.lstm, f"weight_hh_l{layer}").copy_(tensor[f"layers.{layer}.Wh"].T)
            getattr(model.lstm, f"bias_ih_l{layer}").copy_(tensor[f"layers.{layer}.b"])
            bias_hh = getattr(model.lstm, f"bias_hh_l{layer}")
            if f"layers.{layer}.b_h" in tensor:
                bias_hh.copy_(tensor[f"layers.{layer}.b_h"])
            else:
                bias_hh.zero_()
        tied = "out.W" not in tensor
        model.out.weight.copy_(tensor["embed"] if tied else tensor["out.W"].T)
        model.out.bias.copy_(tensor["out.b"])
    return model


def log_likelihoods(run_dir, text: str) -> tuple[float, float]:
    """ln p(text[1:] | text[:-1]) by lecturenn and by PyTorch, from the run's exported weights."""
    run = load_run(run_dir)
    if run.config.model.cell != "lstm":
        raise SystemExit(f"{run_dir}: this example takes an LSTM language model")
    path = export_run(run_dir, "safetensors")
    arrays = load_file(str(path))
    cfg = {
        **json.loads((Path(run_dir) / "model.json").read_text()),
        "hidden_dim": run.config.model.hidden_dim,
        "num_layers": run.config.model.num_layers,
    }
    tokens = run.vocabs["tokens"]
    pieces = text.split() if run.config.data.name == "ptb" else list(text)
    ids = np.array([tokens.index(t) for t in pieces], np.int32)

    logits, _ = rnn_lm.apply(run.model_config, run.params, {}, ids[None, :-1])
    ours = jax.nn.log_softmax(np.asarray(logits[0], np.float64))[np.arange(len(ids) - 1), ids[1:]]
    with torch.no_grad():
        theirs = torch.log_softmax(
            torch_model(arrays, cfg)(torch.from_numpy(ids[:-1]).long()).double(), -1
        )[torch.arange(len(ids) - 1), ids[1:]]
    return float(ours.sum()), float(theirs.sum())


if __name__ == "__main__":
    ours, theirs = log_likelihoods(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "ROMEO:")
    print(
        f"log-likelihood: lecturenn {ours:.6f}, PyTorch {theirs:.6f} "
        f"(difference {abs(ours - theirs):.2e})"
    )
