"""infer / eval --ray on a real Ray (nothing of Ray is mocked), against the same runs without Ray.

One module-scoped cluster started with Ray's own tooling (``ray.cluster_utils.Cluster``): a head of
1 CPU and a second node of 1 CPU declaring ``{"NPU": 2}``, whose workers import the ais_bench
stand-in (API mode; it records the device each session was given and what Ray made visible). The
local-Ray case starts its own Ray from the CLI. Killing a worker, killing the driver and a node
that cannot see the input folder are real: a SIGKILLed actor process, a SIGKILLed driver process, a
third node started by `ray start` in a mount namespace where the input folder is an empty tmpfs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster

from clitools import run
from focalinfer.errors import FocalinferError
from focalinfer.infer import execute, plan_inference, run_inference
from focalinfer.records import AtcRecord, InferRecord
from tinynet import TinyNet, write_databin

pytestmark = pytest.mark.ray

STANDINS = Path(__file__).resolve().parents[1] / "standins"
REPO = Path(__file__).resolve().parents[2]
N_FILES = 37
N_BIG = 16 * 9 + 5  # ten batches of 16: a killed actor still has batches to run at batch 16
H = W = 16
ACTOR_TITLE = "ray::BatchActor"  # the process title Ray gives an actor's worker
# result.json fields that name the run's own folder, time or speed, not the score.
RUN_ONLY = {"results_dir", "summary_file", "created", "images_per_s", "ais_bench_throughput"}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A tiny 1000-class model as a dynamic-batch ONNX and stand-in .om files of batch 1 and 16 (the
    atc stand-in's kind: an ONNX with a fixed batch, with its ATC record); 37 input files and, in
    ``big``, 149; labels half of which its top-1 matches."""
    import torch

    root = tmp_path_factory.mktemp("ray-work")
    torch.manual_seed(0)
    net = TinyNet(num_classes=1000).eval()
    onnx = root / "tiny.onnx"
    oms = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, H, W),), str(onnx), input_names=["image"], output_names=["class"],
                          opset_version=11, dynamo=False, dynamic_axes={"image": {0: "batch"}, "class": {0: "batch"}})
        for batch in (1, 16):
            oms[batch] = root / "om" / f"tiny_bs{batch}.om"
            oms[batch].parent.mkdir(exist_ok=True)
            torch.onnx.export(net, (torch.zeros(batch, 3, H, W),), str(oms[batch]), input_names=["image"],
                              output_names=["class"], opset_version=11, dynamo=False)
            AtcRecord(onnx=str(onnx), om=oms[batch].name, batch_size=batch).write(
                oms[batch].with_name(f"tiny_bs{batch}.atc.json"))
    sets = {}
    for name, count in (("databin", N_FILES), ("databin_big", N_BIG)):
        images = np.random.default_rng(count).standard_normal((count, 1, 3, H, W)).astype(np.float32)
        names = [f"ILSVRC2012_val_{i + 1}" for i in range(count)]
        with torch.no_grad():
            top1 = [int(net(torch.from_numpy(image)).argmax()) for image in images]
        labels = root / f"{name}_label.txt"
        labels.write_text("".join(f"{n}.JPEG {t if i % 2 == 0 else (t + 1) % 1000}\n"
                                  for i, (n, t) in enumerate(zip(names, top1))))
        sets[name] = (write_databin(root / name, images, names), labels, names)
    data, labels, names = sets["databin"]
    return SimpleNamespace(root=root, onnx=onnx, om=oms, data=data, labels=labels, names=names,
                           big=sets["databin_big"][:2])


def _node_env(extra_path: list[str], sessions: Path, cache: Path) -> dict:
    path = os.pathsep.join([*extra_path, str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {"PYTHONPATH": path, "XDG_CACHE_HOME": str(cache), "STANDIN_SESSIONS": str(sessions)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Head (1 CPU) + a node of 1 CPU and {"NPU": 2} whose workers can import the ais_bench stand-in."""
    root = tmp_path_factory.mktemp("ray-cluster")
    sessions = root / "sessions.jsonl"
    head_env = _node_env([], sessions, root / "cache")
    started = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "env_vars": head_env})
    try:
        started.add_node(num_cpus=1, resources={"NPU": 2}, env_vars=_node_env([str(STANDINS)], sessions, root / "cache"))
        ray.init(address=started.address, log_to_driver=False)
        yield SimpleNamespace(address=started.address, sessions=sessions, env=head_env)
    finally:
        ray.shutdown()
        started.shutdown()


# --- helpers ---------------------------------------------------------------------------------


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


def scores(result_json: Path) -> dict:
    data = json.loads(result_json.read_text())
    return {"summary": {k: v for k, v in data["summary"].items() if k not in RUN_ONLY}, "images": data["images"]}


def eval_run(*args):
    result = run("eval", *map(str, args), "--quiet")
    assert result.exit_code == 0, result.output
    return result


def summaries(output: Path, a: str, b: str) -> tuple[dict, dict]:
    return tuple(json.loads((output / f"{name}_summary.json").read_text()) for name in (a, b))


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def actor_pids() -> list[int]:
    """This test process's descendants that are Ray actor workers of focalinfer's BatchActor."""
    children, found, todo = _children(), [], [os.getpid()]
    while todo:
        for pid in children.get(todo.pop(), []):
            todo.append(pid)
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if title.startswith(ACTOR_TITLE):
                found.append(pid)
    return found


def wait_for(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def no_actors_left():
    """Actors of an earlier run are killed at its end; wait until their processes are gone."""
    wait_for(lambda: not actor_pids(), "the previous run's actor processes to exit")


def subprocess_env(cluster) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, **cluster.env}


# --- the same bytes and scores as without Ray --------------------------------------------------


@pytest.mark.parametrize("batch", [1, 16])
def test_eval_onnx_on_cpu_actors_gives_the_local_bytes_and_scores(work, cluster, tmp_path, batch):
    common = ["--onnx", work.onnx, "--labels", work.labels, "--input", work.data, "--batch-size", batch,
              "--backend", "onnxruntime", "--threads", 1]
    eval_run(*common, "--output", tmp_path / "local.json")
    eval_run(*common, "--output", tmp_path / "ray.json", "--ray", cluster.address)
    assert folder_bytes(tmp_path / "ray") == folder_bytes(tmp_path / "local")
    assert len(folder_bytes(tmp_path / "ray")) == N_FILES
    assert scores(tmp_path / "ray.json") == scores(tmp_path / "local.json")
    assert 0 < scores(tmp_path / "ray.json")["summary"]["Acc@1"] < 100
    local, on_ray = summaries(tmp_path, "local", "ray")
    assert list(on_ray) == list(local) + ["ray"]
    assert [v["infiles"] for v in on_ray["filesinfo"].values()] == [v["infiles"] for v in local["filesinfo"].values()]
    assert len(on_ray["npu_compute_time_list"]) == len(local["npu_compute_time_list"]) == -(-N_FILES // batch)
    record = InferRecord.read(tmp_path / "ray")
    actors = record.ray["actors"]
    assert (record.backend, record.files_written, record.batch_size) == ("onnxruntime", N_FILES, batch)
    assert len(actors) == 2 and len({a["node_id"] for a in actors}) == 2  # one per node: SPREAD
    assert sum(a["images"] for a in actors) == record.ray["images"] == N_FILES
    assert all(a["threads"] == 1 and a["backend"] == "onnxruntime" for a in actors)
    assert record.ray["images_per_s"] > 0 and on_ray["ray"] == record.ray


@pytest.mark.parametrize("batch", [1, 16])
def test_eval_om_on_the_npu_node_gives_the_local_bytes_and_scores(work, cluster, tmp_path, batch, standin_api):
    common = ["--om", work.om[batch], "--labels", work.labels, "--input", work.data]
    eval_run(*common, "--output", tmp_path / "local.json")
    eval_run(*common, "--output", tmp_path / "ray.json", "--ray", cluster.address)
    assert folder_bytes(tmp_path / "ray") == folder_bytes(tmp_path / "local")
    assert scores(tmp_path / "ray.json") == scores(tmp_path / "local.json")
    record = InferRecord.read(tmp_path / "ray")
    actors = record.ray["actors"]
    assert record.backend == "ais_bench" and len(actors) == 2  # one per NPU
    # Ray gave each actor one NPU; inside, the device is the first visible one: 0.
    assert sorted(a["visible_devices"] for a in actors) == ["0", "1"]
    assert len({a["node_id"] for a in actors}) == 1 and all(a["device"] == 0 for a in actors)
    sessions = [json.loads(line) for line in cluster.sessions.read_text().splitlines()]
    ours = [s for s in sessions if s["pid"] in {pid for a in actors for pid in a["pids"]}]
    assert sorted((s["device_id"], s["visible_devices"]) for s in ours) == [(0, "0"), (0, "1")]


def test_inputs_shipped_through_the_object_store_give_the_same_bytes(work, cluster, tmp_path):
    options = dict(output=tmp_path, batch_size=16, backend="onnxruntime", threads=1, progress=False)
    run_inference(work.onnx, work.data, output_dirname="local", **options)
    result = run_inference(work.onnx, work.data, output_dirname="ray", ray=cluster.address, ray_ship_inputs=True,
                           **options)
    assert folder_bytes(tmp_path / "ray") == folder_bytes(tmp_path / "local")
    assert result.ray["ship_inputs"] and result.ray["input_bytes_per_image"] == 3 * H * W * 4
    assert result.record.ray == result.ray


def test_auto_is_decided_by_each_actor_on_its_node(work, cluster, tmp_path):
    result = run_inference(work.onnx, work.data, output=tmp_path, output_dirname="auto", batch_size=16,
                           backend="auto", progress=False, ray=cluster.address)
    choices = [a["backend"] for a in result.ray["actors"]]
    assert set(choices) <= {"onnxruntime", "openvino"} and len(choices) == 2
    assert result.record.backend == "+".join(sorted(set(choices))) == result.backend
    assert result.record.plan["runner"]["backend"] == "auto"  # the plan left it to the nodes
    local = run_inference(work.onnx, work.data, output=tmp_path, output_dirname="local", batch_size=16,
                          backend="onnxruntime", progress=False)
    ours, theirs = folder_bytes(result.output_dir), folder_bytes(local.output_dir)
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        assert np.allclose(np.array(ours[name].split(), float), np.array(theirs[name].split(), float), atol=1e-4)


# --- failures: a worker, the driver, a node ----------------------------------------------------


@pytest.mark.parametrize("kind, batch", [("onnx", 1), ("om", 16)])
def test_a_worker_killed_mid_run_changes_nothing(work, cluster, tmp_path, kind, batch, standin_api):
    """An actor's process is SIGKILLed after three batches are written: Ray restarts the actor and
    retries its batches; the folder and the scores are the local run's."""
    data, labels = (work.data, work.labels) if batch == 1 else work.big
    model = work.onnx if kind == "onnx" else work.om[batch]
    options = {"backend": "onnxruntime", "threads": 1} if kind == "onnx" else {}
    eval_run(f"--{kind}", model, "--labels", labels, "--input", data, "--batch-size", batch,
             "--output", tmp_path / "local.json", *(f for k, v in options.items() for f in (f"--{k}", v)))
    no_actors_left()
    plan = plan_inference(model, data, output=tmp_path, output_dirname="ray", batch_size=batch, ray=cluster.address,
                          **options)
    seen, killed = [], []

    def kill_one_actor_after_three_batches(event, *rest):
        if event != "batch":
            return
        seen.append(event)
        if len(seen) == 3:
            pid = actor_pids()[0]
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: pid not in actor_pids(), "the killed actor process to go")
            killed.append(pid)

    result = execute(plan, progress=False, on_event=kill_one_actor_after_three_batches)
    images = len(list(Path(data).glob("*.bin")))
    assert killed and folder_bytes(result.output_dir) == folder_bytes(tmp_path / "local")
    assert result.files_written == images
    restarted = [a for a in result.ray["actors"] if killed[0] in a["pids"]]
    # The killed process was one actor's; Ray restarted that actor, which then ran batches in a new process.
    assert len(restarted) == 1 and len(restarted[0]["pids"]) == 2 and restarted[0]["pids"][0] == killed[0]
    batches = -(-images // batch)
    assert sum(a["batches"] for a in result.ray["actors"]) == batches  # each batch written once
    assert len(json.loads(result.summary_path.read_text())["npu_compute_time_list"]) == batches
    eval_run("--results", tmp_path / "ray", "--labels", labels, "--output", tmp_path / "ray.json")
    assert scores(tmp_path / "ray.json") == scores(tmp_path / "local.json")


DRIVER_KILLED_AFTER_FIVE_BATCHES = """
import os, signal, sys
from focalinfer.infer import execute, plan_inference
model, data, output, address = sys.argv[1:]
plan = plan_inference(model, data, output=output, output_dirname="ray", batch_size=1, backend="onnxruntime",
                      threads=1, ray=address)
written = []
def on_event(kind, *rest):
    if kind == "batch":
        written.append(1)
        if len(written) == 5:
            os.kill(os.getpid(), signal.SIGKILL)
execute(plan, progress=False, on_event=on_event)
"""


def test_a_rerun_after_the_driver_is_killed_resumes(work, cluster, tmp_path):
    env = subprocess_env(cluster)
    killed = subprocess.run([sys.executable, "-c", DRIVER_KILLED_AFTER_FIVE_BATCHES, str(work.onnx), str(work.data),
                             str(tmp_path), cluster.address], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(list((tmp_path / "ray").iterdir())) == 5
    rerun = subprocess.run([sys.executable, "-m", "focalinfer.cli", "infer", "--model-file", str(work.onnx), "--input",
                            str(work.data), "--output", str(tmp_path), "--output-dirname", "ray", "--batch-size", "1",
                            "--backend", "onnxruntime", "--threads", "1", "--ray", cluster.address, "--quiet"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "5 kept from an earlier run" in rerun.stdout
    record = InferRecord.read(tmp_path / "ray")
    assert (record.files_written, record.files_kept) == (N_FILES - 5, 5)
    local = run_inference(work.onnx, work.data, output=tmp_path, output_dirname="local", batch_size=1,
                          backend="onnxruntime", threads=1, progress=False)
    assert folder_bytes(tmp_path / "ray") == folder_bytes(local.output_dir)


def test_a_rerun_refuses_what_a_local_rerun_refuses(work, cluster, tmp_path):
    run_inference(work.om[16], work.data, output=tmp_path, output_dirname="res", progress=False,
                  ray=cluster.address)
    with pytest.raises(FocalinferError, match="holds results of another model"):
        run_inference(work.onnx, work.data, output=tmp_path, output_dirname="res", batch_size=16,
                      backend="onnxruntime", progress=False, ray=cluster.address)


HIDDEN_FOLDER_NODE = """
import os, subprocess, sys
hidden, ray_bin, address = sys.argv[1:]
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", hidden], check=True)  # in this mount namespace only
os.execv(ray_bin, [ray_bin, "start", "--address", address, "--num-cpus", "1", "--block"])
"""


def _unshare_argv() -> list[str]:
    """A private mount namespace (as root; otherwise inside a user namespace, where mounting is allowed)."""
    return ["unshare", "--mount", "--propagation", "private"] + ([] if os.geteuid() == 0 else ["--map-root-user"])


def test_a_node_that_cannot_see_the_input_folder_is_refused_before_work(work, cluster, tmp_path):
    before = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    ray_bin = str(Path(sys.executable).with_name("ray"))
    node = subprocess.Popen(_unshare_argv() + [sys.executable, "-c", HIDDEN_FOLDER_NODE, str(work.data), ray_bin,
                                               cluster.address],
                            env=subprocess_env(cluster), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        new = wait_for(lambda: [n for n in ray.nodes() if n["Alive"] and n["NodeID"] not in before],
                       "the third node to join")[0]
        with pytest.raises(FocalinferError) as refused:
            run_inference(work.onnx, work.data, output=tmp_path, output_dirname="ray", batch_size=16,
                          backend="onnxruntime", progress=False, ray=cluster.address)
        message = str(refused.value)
        assert f"({new['NodeID'][:12]})" in message and str(work.data / work.names[0]) + ".bin" in message
        assert "not there on this node" in message and "\n" not in message
        assert not (tmp_path / "ray").exists()  # refused before any work: no folder, no record
    finally:
        node.send_signal(signal.SIGTERM)  # `ray start --block` stops its raylet and workers, then exits
        try:
            node.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGKILL)  # whatever of its session is left
    wait_for(lambda: not any(n["Alive"] and n["NodeID"] not in before for n in ray.nodes()), "the third node to leave")


# --- a Ray started here by the CLI; doctor ----------------------------------------------------


def test_cli_starts_a_local_ray_when_given_no_address(work, cluster, tmp_path):
    env = subprocess_env(cluster)
    done = subprocess.run([sys.executable, "-m", "focalinfer.cli", "infer", "--model-file", str(work.onnx), "--input",
                           str(work.data), "--output", str(tmp_path), "--output-dirname", "ray", "--batch-size", "16",
                           "--backend", "onnxruntime", "--threads", "1", "--ray", "--quiet"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "images/s in total" in done.stdout and "ray: " in done.stdout
    record = InferRecord.read(tmp_path / "ray")
    assert record.ray["address"] == "local" and record.files_written == N_FILES
    cluster_nodes = {n["NodeID"] for n in ray.nodes()}
    assert not {a["node_id"] for a in record.ray["actors"]} & cluster_nodes  # its own Ray, not the running one
    local = run_inference(work.onnx, work.data, output=tmp_path, output_dirname="local", batch_size=16,
                          backend="onnxruntime", threads=1, progress=False)
    assert folder_bytes(tmp_path / "ray") == folder_bytes(local.output_dir)


def test_doctor_reports_ray_and_the_cluster(cluster):
    env = {**subprocess_env(cluster), "RAY_ADDRESS": cluster.address}
    done = subprocess.run([sys.executable, "-m", "focalinfer.cli", "doctor", "--json"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["ray"]
    assert report["version"] == ray.__version__
    assert (report["cluster"]["cpus"], report["cluster"]["npus"], report["cluster"]["nodes"]) == (2, 2, 2)


def test_an_address_where_nothing_answers_is_one_line_at_once(work, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "focalinfer.cli", "infer", "--model-file", str(work.onnx), "--input",
                           str(work.data), "--output", str(tmp_path), "--output-dirname", "ray", "--batch-size", "16",
                           "--backend", "onnxruntime", "--ray", "127.0.0.1:1"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and time.monotonic() - started < 120  # not ray.init's minutes of retries
    assert done.stderr.strip().splitlines()[-1].startswith("focalinfer: error: --ray 127.0.0.1:1: nothing answers")
    assert not (tmp_path / "ray").exists()
