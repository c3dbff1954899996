from lecturenn.cli import main


def test_data_list_and_verify_on_the_shared_data(data_root, capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "ptb" in out and "conll2003" in out
    assert main(["data", "verify", "ptb"]) == 0
    assert capsys.readouterr().out.count("ok ") == 3


def test_data_verify_reports_a_corrupt_file_with_exit_1(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "tinyshakespeare"
    folder.mkdir()
    (folder / "input.txt").write_text("not shakespeare")
    monkeypatch.setenv("LECTURENN_DATA", str(tmp_path))
    assert main(["data", "verify", "tinyshakespeare"]) == 1
    assert "BAD" in capsys.readouterr().out


def test_unknown_dataset_is_a_user_error(capsys):
    assert main(["data", "fetch", "imagenet"]) == 2
    assert "unknown dataset 'imagenet'" in capsys.readouterr().err
