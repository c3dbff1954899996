import dataclasses

import pytest

from lecturenn.cli import main
from lecturenn.errors import UserError
from lecturenn.experiments import config as config_lib
from lecturenn.experiments import schemas
from lecturenn.models.mlp import MLPConfig

DIGITS = '[data]\nname = "digits"\n'
MLP = '[model]\nkind = "mlp"\n'


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_fill_what_the_file_does_not_say(tmp_path):
    cfg = config_lib.load_config(
        write(tmp_path, "a.toml", MLP + DIGITS + "[optim]\nlearning_rate = 3\n")
    )
    assert cfg.optim.learning_rate == 3.0 and isinstance(cfg.optim.learning_rate, float)
    assert cfg.model == MLPConfig() and cfg.data == schemas.DigitsData()


def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path, "a.toml", MLP + "hiden = [3]\n" + DIGITS)
    with pytest.raises(UserError, match=r"a\.toml: unknown key 'model\.hiden'; valid keys"):
        config_lib.load_config(path)
    path = write(tmp_path, "b.toml", MLP + DIGITS + "[trian]\nepochs = 1\n")
    with pytest.raises(UserError, match=r"unknown key 'trian'"):
        config_lib.load_config(path)


def test_wrong_type_names_key_and_expected_type(tmp_path):
    path = write(tmp_path, "a.toml", MLP + DIGITS + '[train]\nepochs = "ten"\n')
    with pytest.raises(UserError, match=r"key 'train\.epochs' must be an integer, got 'ten'"):
        config_lib.load_config(path)
    path = write(tmp_path, "b.toml", MLP + "hidden = [3, 2.5]\n" + DIGITS)
    with pytest.raises(UserError, match=r"'model\.hidden\[1\]' must be an integer"):
        config_lib.load_config(path)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e39"])
def test_non_finite_or_float32_overflowing_numbers_are_refused(tmp_path, value):
    path = write(tmp_path, "a.toml", MLP + DIGITS + f"[optim]\nlearning_rate = {value}\n")
    with pytest.raises(UserError, match=r"a\.toml: key 'optim\.learning_rate' must be a finite"):
        config_lib.load_config(path)
    plain = write(tmp_path, "b.toml", MLP + DIGITS)
    with pytest.raises(UserError, match=r"key 'train\.input_noise' must be a finite"):
        config_lib.load_config(plain, [f"train.input_noise={value}"])


def test_overrides_are_typed_and_checked(tmp_path):
    path = write(tmp_path, "a.toml", MLP + DIGITS)
    cfg = config_lib.load_config(
        path,
        ["optim.learning_rate=0.01", "model.hidden=[8,4]", "optim.name=sgd", "train.patience=3"],
    )
    assert (cfg.optim.learning_rate, cfg.model.hidden, cfg.optim.name) == (0.01, (8, 4), "sgd")
    assert cfg.train.patience == 3
    with pytest.raises(UserError, match="unknown key 'optim.lr'"):
        config_lib.load_config(path, ["optim.lr=1"])
    with pytest.raises(UserError, match="expected key=value"):
        config_lib.load_config(path, ["optim.learning_rate"])


def test_extends_merges_base_and_detects_cycles(tmp_path):
    write(tmp_path, "base.toml", MLP + 'hidden = [9]\nactivation = "tanh"\n' + DIGITS)
    child = write(tmp_path, "child.toml", 'extends = "base.toml"\n[model]\nactivation = "relu"\n')
    cfg = config_lib.load_config(child)
    assert cfg.model.hidden == (9,) and cfg.model.activation == "relu"
    write(tmp_path, "x.toml", 'extends = "y.toml"\n')
    write(tmp_path, "y.toml", 'extends = "x.toml"\n')
    with pytest.raises(UserError, match="cycle"):
        config_lib.load_config(tmp_path / "x.toml")


def test_extends_replaces_a_table_of_another_kind_whole(tmp_path):
    schedule = 'schedule = { kind = "step_decay", step_size = 100, factor = 0.5 }\n'
    write(tmp_path, "base.toml", MLP + DIGITS + "[optim]\nlearning_rate = 0.1\n" + schedule)
    child = write(
        tmp_path,
        "child.toml",
        'extends = "base.toml"\n[optim]\nschedule = { kind = "exponential", k = 0.01 }\n',
    )
    cfg = config_lib.load_config(child)
    assert cfg.optim.schedule == {"kind": "exponential", "k": 0.01}
    assert cfg.optim.learning_rate == 0.1  # tables without a kind still merge key by key
    same = write(tmp_path, "same.toml", 'extends = "base.toml"\n[optim.schedule]\nfactor = 0.1\n')
    assert config_lib.load_config(same).optim.schedule == {
        "kind": "step_decay",
        "step_size": 100,
        "factor": 0.1,
    }


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="invalid TOML"):
        config_lib.load_config(write(tmp_path, "a.toml", "[model\n"))
    with pytest.raises(UserError, match="config file not found"):
        config_lib.load_config(tmp_path / "nope.toml")


def test_model_kind_and_data_name_select_their_schemas(tmp_path):
    path = write(tmp_path, "a.toml", '[model]\nkind = "transformer"\n' + DIGITS)
    with pytest.raises(UserError, match="key 'model.kind' is 'transformer'; expected one of"):
        config_lib.load_config(path)
    with pytest.raises(UserError, match="missing key 'data.name'"):
        config_lib.load_config(write(tmp_path, "b.toml", MLP))
    path = write(tmp_path, "c.toml", MLP + '[data]\nname = "xor"\nnum_per_class = 3\n')
    with pytest.raises(UserError, match="unknown key 'data.num_per_class'"):
        config_lib.load_config(path)


def test_resolved_config_round_trips_through_toml(tmp_path):
    cfg = config_lib.Config(model=MLPConfig(), data=schemas.DigitsData())
    cfg.optim.schedule = {"kind": "step_decay", "step_size": 10, "factor": 0.5}
    cfg.train.patience = None
    cfg.model = dataclasses.replace(cfg.model, hidden=(8, 4), activation=("tanh", "relu"))
    path = write(tmp_path, "r.toml", config_lib.dumps_toml(config_lib.to_dict(cfg)))
    assert config_lib.load_config(path) == cfg


def test_cli_prints_one_line_and_exits_2_on_a_config_error(tmp_path, capsys):
    path = write(tmp_path, "a.toml", MLP + DIGITS + "[optim]\nlearning_rat = 1\n")
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown key 'optim.learning_rat'" in err
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize(
    "argv, named",
    [
        (["run"], "the following arguments are required: config"),
        (["run", "c.toml", "--from-step", "abc"], "argument --from-step: invalid int value"),
        (["config", "list"], "argument action: invalid choice: 'list'"),
        (["bogus"], "argument command: invalid choice: 'bogus'"),
        (["run", "c.toml", "--outt", "x"], "unrecognized arguments: --outt x"),
    ],
)
def test_cli_usage_errors_are_one_line_naming_the_flag(argv, named, capsys):
    """A bad flag or argument ends like any other user error: one line, exit status 2, no usage
    lines before it."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err and not err.startswith("usage")
