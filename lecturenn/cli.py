"""Command line: ``lecturenn run | sweep | report | eval | tag | sample | gradcheck | config |
data``.

User errors (config, data, paths, checkpoints) end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lecturenn.errors import Interrupted, UserError


def _cmd_run(args) -> int:
    from lecturenn.experiments import config as config_lib

    cfg = config_lib.load_config(args.config, args.set)
    from lecturenn.experiments.runner import run

    if args.resume is not None and args.out is not None and args.resume != args.out:
        raise UserError("give the run folder once: --resume DIR (it is also the output folder)")
    if args.from_step is not None and args.resume is None:
        raise UserError("--from-step N goes with --resume DIR")
    if args.overwrite and args.resume is not None:
        raise UserError("--overwrite starts a new run; it cannot go with --resume")
    out = Path(args.resume or args.out or Path("runs") / cfg.name)
    summary = run(
        cfg,
        out,
        resume=args.resume is not None,
        quiet=args.quiet,
        overwrite=args.overwrite,
        from_step=args.from_step,
    )
    shown = ", ".join(
        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
        for k, v in summary.items()
        if isinstance(v, (int, float, str)) and "_class_" not in k
    )
    print(f"{out}: {shown}")
    return 0


def _gradcheck_mlp(args):
    import jax

    from lecturenn import gradcheck
    from lecturenn.models import mlp

    key = jax.random.PRNGKey(args.seed)
    cfg = mlp.MLPConfig(
        input_dim=6,
        num_classes=4,
        hidden=(7,) * args.depth,
        activation=args.activation,
        dropout=args.dropout,
        batchnorm=args.batchnorm,
        dtype="float64",
    )
    batch = mlp.example_batch(cfg, jax.random.fold_in(key, 7))
    return gradcheck.check_model(mlp.make(cfg), batch, key, h=args.h)


def _cmd_gradcheck(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    from lecturenn import gradcheck

    if args.depth < 1:
        raise UserError(f"--depth must be >= 1 hidden layer, got {args.depth}")
    if not 0 < args.h < 1:
        raise UserError(f"--h must be a small positive step, e.g. 1e-5; got {args.h}")
    if args.target == "mlp":
        rows = _gradcheck_mlp(args)
    else:
        from lecturenn.experiments import checks
        from lecturenn.experiments import config as config_lib

        if not args.target.endswith(".toml") and not Path(args.target).exists():
            raise UserError(
                f"gradcheck: {args.target!r} is neither 'mlp' nor a config file "
                "(e.g. configs/ner_window.toml)"
            )
        cfg = config_lib.load_config(args.target, args.set)
        rows = checks.toy_check(cfg, seed=args.seed, h=args.h)
    print(gradcheck.format_table(rows, args.tol, args.numeric_tol))
    failed = [r.path for r in rows if not r.ok(args.tol, args.numeric_tol)]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("all gradients agree")
    return 0


def _cmd_config(args) -> int:
    from lecturenn.experiments import config as config_lib
    from lecturenn.experiments import schemas

    sections = {
        "optim": config_lib.OptimConfig,
        "train": config_lib.TrainConfig,
        "parallel": config_lib.ParallelConfig,
    }
    names = args.names or [*schemas.MODELS, *schemas.DATASETS, *sections]
    for name in names:
        if name in schemas.MODELS:
            cls, title = schemas.MODELS[name].config, f'[model] kind = "{name}"'
            title += f" ({schemas.MODELS[name].task} task)"
        elif name in schemas.DATASETS:
            cls, title = schemas.DATASETS[name], f'[data] name = "{name}"'
        elif name in sections:
            cls, title = sections[name], f"[{name}]"
        else:
            known = [*schemas.MODELS, *schemas.DATASETS, *sections]
            raise UserError(f"config show: unknown {name!r}; expected one of {', '.join(known)}")
        print(title)
        for key, type_text, default, meaning in schemas.describe(cls):
            if key != "name" or name in sections:
                print(f"  {key:<24} {type_text:<22} {default:<18} {meaning}")
        for key, meaning in schemas.filled_from_data(cls):
            print(f"  {key:<24} {'(from the data)':<41} {meaning}")
        print()
    return 0


def _progress(url: str, received: int, expected: int | None) -> None:
    total = f"/{expected / 1e6:.1f}" if expected else ""
    print(f"\r{url}: {received / 1e6:.1f}{total} MB", end="", file=sys.stderr, flush=True)


def _cmd_data(args) -> int:
    from lecturenn.data import registry

    if args.action == "list":
        root = registry.data_root()
        print(f"data root: {root}")
        for row in registry.list_datasets():
            status = "present" if row.present else f"missing {len(row.missing)} file(s)"
            print(f"{row.name:<16} {status:<20} {row.description}")
        return 0
    names = args.names or ([] if args.action == "fetch" else list(registry.DATASETS))
    if not names:
        raise UserError(f"data fetch: name a dataset: {', '.join(registry.DATASETS)}")
    for name in names:
        if name not in registry.DATASETS:
            raise UserError(
                f"unknown dataset {name!r}; expected one of {', '.join(registry.DATASETS)}"
            )
    bad = 0
    for name in names:
        if args.action == "fetch":
            for path in registry.fetch(name, base_url=args.base_url, progress=_progress):
                print(f"{name}: {path}")
        else:
            for path, ok, message in registry.verify(name):
                bad += not ok
                print(f"{'ok ' if ok else 'BAD'} {path}: {message}")
    return 1 if bad else 0


def _cmd_sweep(args) -> int:
    from lecturenn.experiments import config as config_lib
    from lecturenn.experiments import sweep

    cfg = config_lib.load_config(args.config, args.set)
    space = sweep.load_space(args.space) if args.space else None
    out = Path(args.out or Path("runs") / f"{cfg.name}_sweep")
    rows = sweep.run_sweep(
        args.config,
        args.trials,
        out,
        space=space,
        overrides=args.set,
        seed=args.seed,
        quiet=args.quiet,
        per_call=args.trials_per_call,
    )
    print((out / "sweep.md").read_text() if (out / "sweep.md").exists() else rows)
    return 0


def _cmd_sample(args) -> int:
    from lecturenn.experiments.inference import sample_run

    print(sample_run(args.run, args.prime, args.length, args.temperature, args.seed))
    return 0


def _cmd_eval(args) -> int:
    from lecturenn.experiments.inference import evaluate_run

    print(evaluate_run(args.run, args.split, args.predictions))
    return 0


def _cmd_tag(args) -> int:
    from lecturenn.experiments.inference import tag_text

    print("\n".join(f"{token}\t{tag}" for token, tag in tag_text(args.run, args.text)))
    return 0


def _cmd_export(args) -> int:
    from lecturenn.experiments.export import export_run

    print(export_run(args.run, args.format, args.out))
    return 0


def _cmd_report(args) -> int:
    from lecturenn.experiments.report import report

    print(report(args.runs, args.plot, args.metric))
    return 0


def _per_call(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"want a positive integer or auto, got {text!r}")
    return value


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (the flag or argument and
    what is wrong with it, and where the options are listed), exit status 2, like every other
    user error of the command line; argparse's own prints the usage lines first. Subcommands'
    parsers are of the same class."""

    def error(self, message: str):
        flat = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {flat} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from lecturenn import __version__, gradcheck

    parser = Parser(prog="lecturenn", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lecturenn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="train from a TOML config and write a run folder")
    p.add_argument("config")
    p.add_argument("--out", help="run folder (default runs/NAME)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.learning_rate=0.01",
    )
    p.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR from its checkpoint (or extend it: --set train.epochs=N)",
    )
    p.add_argument(
        "--from-step",
        type=int,
        metavar="N",
        help="with --resume: continue from the checkpoint of epoch N instead of the latest",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace what --out holds when the run finishes"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("gradcheck", help="manual vs jax.grad vs centered differences")
    p.add_argument(
        "target", help="a config file (its model, shrunk, in float64), or mlp (flags below)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value first, e.g. --set model.dropout=0.3",
    )
    p.add_argument("--depth", type=int, default=3, help="mlp: hidden layers")
    p.add_argument("--activation", default="tanh", help="mlp: hidden activation")
    p.add_argument("--dropout", type=float, default=0.0, help="mlp: dropout rate")
    p.add_argument("--batchnorm", action="store_true", help="mlp: batch normalization")
    p.add_argument("--h", type=float, default=1e-5, help="finite-difference step")
    p.add_argument(
        "--tol",
        type=float,
        default=gradcheck.EXACT_TOL,
        help="max relative error manual vs jax.grad",
    )
    p.add_argument(
        "--numeric-tol",
        type=float,
        default=gradcheck.NUMERIC_TOL,
        help="max relative error vs centered differences",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_gradcheck)

    p = sub.add_parser("sweep", help="random search, trials of one shape in one compiled program")
    p.add_argument("config")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--space", help="TOML search space (default: log-uniform lr and l2, seed)")
    p.add_argument("--out", help="sweep folder (default runs/NAME_sweep)")
    p.add_argument("--seed", type=int, default=0, help="seed of the trial sampler")
    p.add_argument(
        "--trials-per-call",
        type=_per_call,
        default="auto",
        metavar="K|auto",
        help="trials each call of the compiled epoch trains: all vmapped together for small "
        "steps, one after another for large ones (auto, from XLA's estimate of a step's flops)",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser(
        "eval",
        help="a trained run on a split: a tagger's entity-level P/R/F1 (conlleval), a language "
        "model's (recurrent or NPLM) nats/token and perplexity",
    )
    p.add_argument(
        "run",
        nargs="+",
        help="run folder of a window tagger or a language model; several: their ensemble "
        "(a tagger's: one config's seeds)",
    )
    p.add_argument("--split", default="test", help="train | valid | test (LMs: valid | test)")
    p.add_argument("--predictions", help="also write conlleval input (token gold pred) here")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("tag", help="tag a sentence with a trained tagger run")
    p.add_argument("run", help="run folder of a window tagger")
    p.add_argument("text", help='e.g. "Museums in Paris are amazing"')
    p.set_defaults(func=_cmd_tag)

    p = sub.add_parser("sample", help="sample text from a trained language-model run")
    p.add_argument("run", help="run folder of a language model")
    p.add_argument("--prime", default="", help='text to start from, e.g. "ROMEO:"')
    p.add_argument("--length", type=int, default=500, help="tokens to sample")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("export", help="a run's best parameters as safetensors or npz")
    p.add_argument("run", help="run folder")
    p.add_argument("--format", default="safetensors", help="safetensors (the export extra) or npz")
    p.add_argument("--out", help="file to write (default: RUN/model.FORMAT)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("report", help="compare run folders: table and curves")
    p.add_argument("runs", nargs="+", help="run folders")
    p.add_argument("--plot", default="report.png", help="comparison plot path ('' for none)")
    p.add_argument("--metric", help="metric to plot, e.g. val_accuracy (default: first common)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("config", help="the keys a config may set, with types and defaults")
    p.add_argument("action", choices=["show"])
    p.add_argument("names", nargs="*", help="model kinds, data sets or optim/train/parallel")
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser("data", help="list, fetch or verify the named datasets")
    p.add_argument("action", choices=["list", "fetch", "verify"])
    p.add_argument("names", nargs="*", help="dataset names (verify: all when none given)")
    p.add_argument(
        "--base-url",
        metavar="URL",
        help="fetch from a mirror: its scheme, host and path prefix replace the original's",
    )
    p.set_defaults(func=_cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("lecturenn: interrupted", file=sys.stderr)
        return 130
    except UserError as err:
        print(
            f"lecturenn: {'' if isinstance(err, Interrupted) else 'error: '}{err}", file=sys.stderr
        )
        return 130 if isinstance(err, Interrupted) else 2


if __name__ == "__main__":
    sys.exit(main())
