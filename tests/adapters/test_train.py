"""msm-train end to end on a CausVid-like stand-in trainer, wandb offline."""

import glob
import json
import os
import struct
import sys
import time

import pytest
import yaml

from msm_plugin import train
from tests.adapters.standins import CausVidTrainer, make_config


def _write_config(tmp_path, **overrides):
    config = make_config(output_path=str(tmp_path / "out"), max_steps=3, use_wandb=True,
                         extra_losses=["msm"], msm={"lam": 0.25, "normalization": "motion"})
    config.update(overrides)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _read_records(run_file):
    """The wandb ``Record`` protobufs of an offline run's ``.wandb`` file.

    The file is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of records
    (crc32 u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last).
    """
    from wandb.proto import wandb_internal_pb2

    data, pos, pending, records = open(run_file, "rb").read(), 7, b"", []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block trailer too short for a header: zero padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if pos + 7 + length > len(data):  # still being written
            break
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _wandb_history(run_file, timeout=60.0):
    """``{step: {key: value}}`` of an offline run, once its ``exit`` record is on disk.

    wandb's writer process may still be flushing when ``wandb.finish()`` returns, so wait for the
    record that closes the run rather than reading a partial file.
    """
    deadline = time.monotonic() + timeout
    while True:
        records = _read_records(run_file)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    rows = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            rows[row["_step"]] = row
    return rows


class Recording(CausVidTrainer):
    built = []

    def __init__(self, config):
        Recording.built.append(config)
        super().__init__(config)


def test_end_to_end_extra_keys_reach_the_wandb_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    Recording.built.clear()
    train.main(["--config_path", _write_config(tmp_path), "--no_save"], trainer_cls=Recording)
    (config,) = Recording.built
    assert config.no_save is True and config.no_visualize is False
    (run_file,) = glob.glob(str(tmp_path / "out" / "wandb" / "offline-run-*" / "run-*.wandb"))
    history = _wandb_history(run_file)
    assert sorted(history) == [0, 1, 2]
    # dfake_gen_update_ratio = 2: generator steps 0 and 2 carry upstream's keys and the extra
    # losses' keys in the same row; step 1 (critic only) carries neither
    for step in (0, 2):
        row = history[step]
        assert {"generator_loss", "critic_loss", "dmdtrain_gradient_norm"} <= row.keys()
        assert {"msm_loss", "dmd_loss", "msm_lambda", "msm_gradient_norm", "msm_grad_ratio", "msm_motion_pred_real",
                "msm_motion_gap_real", "msm_motion_gap_fake"} <= row.keys()
        assert row["msm_lambda"] == 0.25
        assert row["generator_loss"] == pytest.approx(row["dmd_loss"] + 0.25 * row["msm_loss"], rel=1e-6)
    assert "critic_loss" in history[1] and "msm_loss" not in history[1] and "generator_loss" not in history[1]
    assert not os.path.exists(tmp_path / "out" / "checkpoint_model_000000")  # --no_save honoured


def test_extra_logs_go_to_the_step_that_trained_the_generator(tmp_path):
    logged = []
    trainer = CausVidTrainer(make_config(output_path=str(tmp_path), extra_losses=["msm"]))
    from msm_plugin.adapters import apply_extra_losses

    train.log_extra_losses(apply_extra_losses(trainer), log=lambda logs, step: logged.append((step, logs)))
    for _ in range(4):  # dfake_gen_update_ratio = 2: the generator trains at steps 0 and 2
        trainer.train_one_step()
        trainer.step += 1
    assert [step for step, _ in logged] == [0, 2]
    assert all("msm_loss" in logs for _, logs in logged)


def test_unwrap_trainer_also_removes_the_logging_wrap(tmp_path):
    from msm_plugin.adapters import apply_extra_losses, unwrap_trainer

    trainer = CausVidTrainer(make_config(output_path=str(tmp_path), extra_losses=["msm"]))
    before = dict(vars(trainer))
    train.log_extra_losses(apply_extra_losses(trainer), log=lambda logs, step: None)
    assert vars(trainer)["train_one_step"].__name__ == "train_one_step"
    unwrap_trainer(trainer)
    assert vars(trainer).keys() == before.keys()
    assert trainer.train_one_step.__func__ is CausVidTrainer.train_one_step


def test_non_main_process_logs_nothing(tmp_path):
    logged = []
    trainer = CausVidTrainer(make_config(output_path=str(tmp_path), extra_losses=["msm"]))
    trainer.is_main_process = False
    from msm_plugin.adapters import apply_extra_losses, pop_extra_logs

    train.log_extra_losses(apply_extra_losses(trainer), log=lambda logs, step: logged.append(logs))
    trainer.train_one_step()
    assert logged == [] and pop_extra_logs(trainer) == {}


def _one_line_exit(capsys, argv, **kwargs):
    """Run msm-train's main; it must exit with status 2 and print exactly one line, no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv, **kwargs)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_config_error_stops_before_the_trainer_is_built(tmp_path, capsys):
    Recording.built.clear()
    path = _write_config(tmp_path, msm={"lamda": 0.5})
    with pytest.raises(ValueError, match="did you mean `lam`"):
        train.run(["--config_path", path], trainer_cls=Recording)
    err = _one_line_exit(capsys, ["--config_path", path], trainer_cls=Recording)
    assert err.startswith("msm-train: error: unknown option `msm.lamda`; did you mean `lam`?")
    assert Recording.built == [] and not os.path.exists(tmp_path / "out")


def test_without_extra_losses_the_trainer_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", type(sys)("wandb"))  # main's final wandb.finish()
    sys.modules["wandb"].finish = lambda: None
    Recording.built.clear()
    config = make_config(output_path=str(tmp_path / "out"), max_steps=1)
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(config))
    trained = []
    monkeypatch.setattr(Recording, "train", lambda self: trained.append(self))
    train.main(["--config_path", str(path), "--no_visualize"], trainer_cls=Recording)
    (trainer,) = trained
    assert "train_one_step" not in vars(trainer)
    assert "compute_distribution_matching_loss" not in vars(trainer.distillation_model)


def test_missing_causvid_gives_install_hint_in_one_line_and_status_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "causvid", None)
    with pytest.raises(ModuleNotFoundError, match=r"package `causvid` is not installed.*pip install -e \."):
        train.run(["--config_path", _write_config(tmp_path)])
    err = _one_line_exit(capsys, ["--config_path", _write_config(tmp_path)])
    assert err.startswith("msm-train: error: msm-train runs CausVid's own trainer") and "pip install -e ." in err


def test_missing_config_file_in_one_line_and_status_2_and_flags(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="--config_path: no such file"):
        train.run(["--config_path", str(tmp_path / "nope.yaml")])
    err = _one_line_exit(capsys, ["--config_path", str(tmp_path / "nope.yaml")])
    assert err == f"msm-train: error: --config_path: no such file {str(tmp_path / 'nope.yaml')!r}\n"
    err = _one_line_exit(capsys, ["--host", "fast_video", "--config_path", "x"])
    assert err == "msm-train: error: unknown host 'fast_video'; known hosts: causvid, fastgen, fastvideo, self_forcing\n"
    err = _one_line_exit(capsys, ["--host", "fastvideo", "--config_path", "x"])
    assert err.startswith("msm-train: error: FastVideo builds the method class its YAML names: set `method._target_: msm_plugin.hosts.fastvideo.MSMDMD2Method`")
    with pytest.raises(SystemExit):
        train.main([])
    args = train.build_parser().parse_args(["--config_path", "x", "--local_rank", "3", "--no_visualize"])
    assert (args.local_rank, args.no_visualize, args.no_save) == (3, True, False)


def test_a_yaml_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(TypeError, match="to hold a mapping of config keys, got a ListConfig"):
        train.load_config(str(path))


@pytest.mark.parametrize(
    "text, where, problem",
    [
        ("msm: {lam: 0.5\n", "line 2, column 1", "did not find expected ',' or '}' (in a flow mapping that starts at line 1, column 6)"),
        ("extra_losses: [msm]\nmsm:\n  lam: 0.5\n lam: 1\n", "line 4, column 2", "did not find expected key (in a block mapping that starts at line 1, column 1)"),
        ("msm: {lam: 0.5}\nmsm: {lam: 1}\n", "line 2, column 1", "found duplicate key msm"),
    ],
)
def test_a_malformed_yaml_is_one_line_naming_the_file_and_line(tmp_path, capsys, text, where, problem):
    Recording.built.clear()
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    err = _one_line_exit(capsys, ["--config_path", str(path)], trainer_cls=Recording)
    assert err.startswith(f"msm-train: error: {path} is not valid YAML: {where}: {problem}")
    assert Recording.built == []


def test_help_lists_only_the_hosts_msm_train_runs_and_says_where_the_others_go(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--host HOST whose trainer to run: causvid, self_forcing (default: causvid)" in text
    assert "fastgen, fastvideo: not run by msm-train; their framework's own launcher builds msm-plugin's class" in text
    assert train.runnable_hosts() == ["causvid", "self_forcing"]
