"""The ais_bench backend's generation handling (docs/contract.md, "Generations"): detection, argv,
log, device times and the 2024 path rules, on their own and against each generation's stand-in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from focalinfer.backend import ais_bench
from focalinfer.backend.ais_bench import (
    LogReader, check_paths_for, cli_argv, device_times_ms, help_generation, session_generation,
)
from focalinfer.errors import FocalinferError

STANDINS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "standins")


# --- pure pieces ----------------------------------------------------------------------------


def test_generation_from_help_and_session_attributes():
    assert help_generation("  --divide_input DIVIDE_INPUT\n  --threads THREADS") == "2024"
    assert help_generation("  --warmup_count WARMUP_COUNT\n") == "2023"

    class Old:
        def sumary(self): ...

    class New:
        def summary(self): ...

    assert (session_generation(Old), session_generation(New)) == ("2023", "2024")


def test_device_times_in_either_form():
    durations = SimpleNamespace(sumary=lambda: SimpleNamespace(exec_time_list=[5.0, np.float32(4.5)]))
    pairs = SimpleNamespace(summary=lambda: SimpleNamespace(exec_time_list=[(100.0, 105.0), [200.5, 204.0]]))
    assert device_times_ms(durations) == [5.0, 4.5]
    assert device_times_ms(pairs) == [5.0, 3.5]
    assert device_times_ms(SimpleNamespace()) is None


def test_the_log_gives_the_devices_total_not_the_last_device():
    reader = LogReader()
    for line in ("[INFO] throughput 1000*batchsize.mean(4)/NPU_compute_time.mean(94.0): 42.7",
                 "[INFO] i:0 device_0 throughput:42.7 start_time:1.0 end_time:2.0",
                 "[INFO] throughput 1000*batchsize.mean(4)/NPU_compute_time.mean(85.1): 47.0",
                 "[INFO] i:1 device_1 throughput:47.0 start_time:1.0 end_time:2.0",
                 "[INFO] summary throughput:89.7"):
        reader.feed(line)
    assert (reader.throughput, reader.batch) == (89.7, 4.0)
    single = LogReader()
    single.feed("[INFO] throughput 1000*batchsize.mean(16)/NPU_compute_time.mean(2.0): 8000.0")
    assert single.throughput == 8000.0


def test_divide_input_only_where_it_exists():
    def argv(generation, device):
        return cli_argv("py", "m.om", "in", "out", "r", "TXT", None, device, 1, 1, "zero", generation=generation)

    assert argv("2024", "0,1")[-2:] == ["--divide_input", "true"]
    assert "--divide_input" not in argv("2024", "0") and "--divide_input" not in argv("2023", "0,1")


@pytest.fixture()
def good_paths(tmp_path):
    model = tmp_path / "m_bs4.om"
    model.write_bytes(b"om")
    data = tmp_path / "databin"
    data.mkdir()
    return model, data


def refused(generation, **paths) -> str | None:
    try:
        check_paths_for(generation, **paths)
    except FocalinferError as e:
        return str(e)
    return None


def test_every_2024_path_rule_is_one_line_naming_path_rule_and_fix(good_paths, tmp_path):
    model, data = good_paths
    assert refused("2024", model=model, input_dir=data, output=tmp_path, output_dirname="result") is None
    spaced = tmp_path / "my data"
    spaced.mkdir()
    link = tmp_path / "link.om"
    link.symlink_to(model)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)
    cases = {
        "space": (dict(model=model, input_dir=spaced), f"{spaced}: ", "' '", "without spaces"),
        "plus": (dict(model=tmp_path / "a+b.om"), "a+b.om: ", "'+'", "without spaces, '+'"),
        "non-ASCII": (dict(model=tmp_path / "modèle.om"), "modèle.om: ", "'è'", "non-ASCII"),
        "symlink": (dict(model=link), f"{link}: ", "symbolic link", f"real path ({model})"),
        "writable": (dict(model=model, input_dir=shared), f"{shared}: ", "mode 775", f"chmod go-w {shared}"),
        "absolute dirname": (dict(model=model, output_dirname=str(tmp_path / "r")), "r: ", "absolute", "--output"),
    }
    for name, (paths, starts, rule, fix) in cases.items():
        message = refused("2024", **paths)
        assert message and "\n" not in message, name
        assert starts in message and rule in message and fix in message and "2024" in message, (name, message)
        assert refused("2023", **paths) is None, name  # the 2023 generation takes any path


# --- against the stand-ins --------------------------------------------------------------------


def test_the_generation_is_asked_once_per_interpreter(standin_cli, ais_bench_generation, monkeypatch):
    asked = []
    real_run = subprocess.run

    def counting_run(argv, *args, **kwargs):
        asked.append(argv)
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(ais_bench.subprocess, "run", counting_run)
    assert ais_bench.cli_generation(sys.executable) == ais_bench_generation
    assert ais_bench.cli_generation(sys.executable) == ais_bench_generation
    assert asked == [[sys.executable, "-m", "ais_bench", "--help"]]


def test_api_generation_and_device_times(standin_api, ais_bench_generation, tmp_path, monkeypatch, capsys):
    import warnings

    import torch

    from focalinfer.backend.ais_bench import AisBenchRunner, api_generation

    om = tmp_path / "t_bs2.om"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.nn.Linear(4, 3), (torch.zeros(2, 4),), str(om), dynamo=False, opset_version=11,
                          input_names=["x"], output_names=["y"])
    assert api_generation(om) == ais_bench_generation
    monkeypatch.setenv("STANDIN_DEVICE_MS", "5")  # the device's own time, nothing like the host's clock
    with AisBenchRunner(om) as runner:
        assert runner.generation == ais_bench_generation
        runner.infer(np.zeros((2, 4), np.float32))
        runner.reset_times()
        for _ in range(3):
            runner.infer(np.zeros((2, 4), np.float32))
        assert runner.compute_times_ms == [5.0, 5.0, 5.0]
    assert "WARN" not in capsys.readouterr().err
    monkeypatch.setenv("STANDIN_NO_DEVICE_TIMES", "1")
    with AisBenchRunner(om) as runner:
        runner.infer(np.zeros((2, 4), np.float32))
        times = runner.compute_times_ms
        runner.compute_times_ms  # said once
    err = capsys.readouterr().err
    assert len(times) == 1 and err.count("reports no device times") == 1 and "wall time" in err


def test_the_2024_standin_refuses_what_focalinfer_refuses_first(standin_cli, ais_bench_generation, good_paths,
                                                                  tmp_path):
    """The rules are the generation's: run directly, the 2024 stand-in exits 2 on the same paths."""
    model, data = good_paths
    spaced = tmp_path / "with space.om"
    shutil.copy(model, spaced)
    argv = [sys.executable, "-m", "ais_bench", "--model", str(spaced), "--input", str(data), "--output",
            str(tmp_path), "--output_dirname", "r"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=STANDINS))
    message = refused(ais_bench_generation, model=spaced, input_dir=data, output=tmp_path, output_dirname="r")
    if ais_bench_generation == "2024":
        assert proc.returncode == 2 and proc.stdout.count("[ERROR]") == 1 and message
        assert not standin_cli.exists()  # refused while reading its arguments
    else:
        assert standin_cli.exists() and message is None  # 2023 takes the paths (and records the call)


def test_an_ais_bench_that_does_not_start_is_one_line_saying_why(tmp_path, monkeypatch):
    """An install whose runtime cannot load (CANN's environment not sourced) is not "not installed"."""
    package = tmp_path / "ais_bench"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("raise ImportError('libascendcl.so: cannot open shared object file')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with pytest.raises(FocalinferError) as error:
        ais_bench.cli_generation(sys.executable)
    message = str(error.value)
    assert "\n" not in message and "--help failed (exit 1): ImportError: libascendcl.so" in message
    assert "set_env.sh" in message and type(error.value) is FocalinferError
