"""Scale-out on CPU: meshes of virtual devices, FSDP, gradient accumulation,
two processes through ``jax.distributed`` on 127.0.0.1, and checkpoints that
move between meshes.

Float tolerance: data parallelism changes the order in which per-example
gradients are summed (per device, then across devices; gloo across
processes), so parameters agree to float32 rounding, not bitwise. Measured
after 20-60 Adam steps: at most ~1e-7 apart (parameters are O(0.1)); the
tests allow 1e-5.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec

from conftest import ROOT, TINY, checkpoint_steps, digest, environment_with_tests, final_params, launch_in_process
from jaxclf import peers
from jaxclf.hardware import FSDP_AXIS, fsdp_partition
from jaxclf.models.mlp import MLP
from jaxclf.objectives import Objective
from jaxclf.train_state import create_train_state, train_step

TOLERANCE = 1e-5  # see the module docstring


# -- the sharding rule ------------------------------------------------------------


def test_fsdp_shards_the_largest_divisible_dimension_of_large_tensors():
    assert fsdp_partition((768, 3072), 4, min_size=1024) == PartitionSpec(None, FSDP_AXIS)
    assert fsdp_partition((3072, 768), 4, min_size=1024) == PartitionSpec(FSDP_AXIS, None)
    assert fsdp_partition((16, 16, 3, 768), 8, min_size=1024) == PartitionSpec(None, None, None, FSDP_AXIS)
    assert fsdp_partition((256, 256), 2, min_size=1024) == PartitionSpec(FSDP_AXIS, None)  # ties: the first
    assert fsdp_partition((1000, 10), 8, min_size=1024) == PartitionSpec(FSDP_AXIS, None)  # 10 does not divide
    assert fsdp_partition((999, 7), 2, min_size=1024) == PartitionSpec()  # nothing divides: replicated
    assert fsdp_partition((768,), 4, min_size=1024) == PartitionSpec()  # small: replicated
    assert fsdp_partition((), 4, min_size=0) == PartitionSpec()  # scalars
    assert fsdp_partition((768, 3072), 1, min_size=0) == PartitionSpec()  # no fsdp axis to split over


def test_local_devices_takes_the_first_devices_of_every_process():
    from types import SimpleNamespace

    from jaxclf.hardware import first_devices_of_each_process

    devices = [SimpleNamespace(id=i, process_index=i // 4) for i in range(8)]  # 2 processes x 4 devices
    assert [device.id for device in first_devices_of_each_process(devices, 1)] == [0, 4]
    assert [device.id for device in first_devices_of_each_process(devices, 3)] == [0, 1, 2, 4, 5, 6]


# -- gradient accumulation --------------------------------------------------------


@pytest.mark.parametrize("micro_batches", [2, 4])
def test_accumulated_micro_batches_give_the_full_batch_update(micro_batches):
    model = MLP(num_classes=5, hidden_sizes=(16,))  # no dropout, no BatchNorm
    optimizer = optax.sgd(0.5)  # an update proportional to the gradient (Adam would hide its scale)
    state = create_train_state(model, optimizer, (4, 4, 1), jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.normal(size=(16, 4, 4, 1)), jnp.float32), "label": jnp.arange(16) % 5}

    # The reference: optax's cross-entropy over the whole batch, one update.
    def full_batch_loss(params):
        logits = model.apply({"params": params}, batch["image"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

    updates, _ = optimizer.update(jax.grad(full_batch_loss)(state.params), state.opt_state, state.params)
    expected = optax.apply_updates(state.params, updates)

    stepped, outputs = jax.jit(train_step, static_argnums=3)(state, batch, Objective(), micro_batches)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), stepped.params, expected)
    np.testing.assert_allclose(outputs["loss"], full_batch_loss(state.params), rtol=1e-6)
    logits = model.apply({"params": state.params}, batch["image"])
    np.testing.assert_array_equal(outputs["correct"], np.argmax(logits, -1) == batch["label"])  # in batch order


def test_micro_batches_must_split_over_the_devices(tmp_path, data_dir):
    code, stderr = launch_in_process(
        f"hydra.run.dir={tmp_path}", f"data.data_dir={data_dir}", "trainer.accumulate_steps=3", *TINY
    )
    assert code == 2
    assert "data.batch_size=128 does not split into trainer.accumulate_steps=3 micro-batches" in stderr
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    "overrides,message",
    [
        (("hardware.mesh.fsdp=2",), "hardware.mesh.fsdp=2 is not valid; it must be a positive divisor of the device"),
        (("hardware.mesh.fsdp=0",), "hardware.mesh.fsdp=0 is not valid; it must be a positive integer"),
        (("trainer.accumulate_steps=0",), "trainer.accumulate_steps=0 is not valid; it must be a positive integer"),
        (("hardware=gpu_single", "hardware.cpu_devices=4"), "hardware.cpu_devices=4 is not valid with"),
        (("hardware.num_processes=2", "hardware.process_id=2"), "hardware.process_id=2 is not valid"),
        (("hardware.local_devices=2",), "hardware.local_devices=2 is not valid; this process has 1 cpu devices"),
    ],
)
def test_bad_hardware_keys_are_one_line(tmp_path, data_dir, overrides, message):
    code, stderr = launch_in_process(f"hydra.run.dir={tmp_path}", f"data.data_dir={data_dir}", *overrides)
    assert code in (1, 2) and message in stderr, stderr
    assert "Traceback" not in stderr


# -- configs ------------------------------------------------------------------------


def test_a_gpu_run_leaves_jax_to_find_either_gpu_backend():
    """``jax_platforms="gpu"`` is expanded to CUDA and ROCm, and JAX 0.11 with only its CUDA plugin
    refuses to start with it ("Backend 'rocm' is not in the list of known backends", seen on an H200)."""
    program = (
        "import jax\n"
        "from jaxclf import hardware\n"
        "from jaxclf.errors import ConfigError\n"
        "try:\n"
        "    hardware.setup(hardware.HardwareConfig(platform='gpu'))\n"
        "except ConfigError as error:\n"
        "    print(error)\n"
        "print(repr(jax.config.jax_platforms))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    no_gpu, platforms = result.stdout.strip().splitlines()[-2:]
    assert no_gpu.startswith("hardware.platform='gpu': JAX finds no gpu devices")  # this machine has none
    assert "gpu" not in platforms


def test_the_slurm_config_starts_one_distributed_process_per_gpu(compose):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = compose(["hardware=gpu_slurm", "hydra.launcher.nodes=4"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.tasks_per_node == launcher.gpus_per_node == 8 and launcher.nodes == 4
    assert cfg.hardware.distributed and cfg.hardware.platform == "gpu"
    assert cfg.hardware.coordinator_address is None  # jax.distributed reads it from SLURM's environment
    params = OmegaConf.to_container(launcher, resolve=False)
    params.update(submitit_folder="/tmp/submitit", name="jaxclf")  # resolved by Hydra at launch
    slurm = instantiate(params)
    assert slurm.params["tasks_per_node"] == 8 and slurm.params["nodes"] == 4


def test_describe_reports_the_bytes_each_device_holds(compose, capsys):
    from jaxclf.describe import describe

    summary = describe(compose(["mode=describe"]))
    num_params = summary["num_params"]
    assert summary["bytes_per_device"]["params"] == 4 * num_params  # one device holds every float32
    # AdamW: two moments per parameter, plus its step counts (int32 scalars).
    assert 8 * num_params <= summary["bytes_per_device"]["optimizer_state"] <= 8 * num_params + 64
    assert "per device on the mesh data=1 x fsdp=1: parameters 0.3 MiB" in capsys.readouterr().out


# -- one process, eight virtual devices ---------------------------------------------


@pytest.fixture(scope="module")
def meshes_of_eight(data_dir) -> dict:
    """What ``tests/multidevice_check.py`` reports for each mesh (a fresh process with 8 CPU devices)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "multidevice_check.py"), data_dir],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_mesh_of_eight_devices_reaches_one_devices_parameters(meshes_of_eight):
    assert set(meshes_of_eight) == {"1 device", "data=8", "data=4 x fsdp=2", "data=2 x fsdp=4"}
    for mesh, report in meshes_of_eight.items():
        assert report["max_abs_difference"] < TOLERANCE, mesh


def test_fsdp_shards_parameters_and_optimizer_state(meshes_of_eight):
    kernel = [256, 256]  # the MLP's largest parameter
    expected = {"data=8": ("P()", [kernel]), "data=4 x fsdp=2": ("P('fsdp', None)", [[128, 256]])}
    expected["data=2 x fsdp=4"] = ("P('fsdp', None)", [[64, 256]])
    for mesh, (spec, shard_shapes) in expected.items():
        report = meshes_of_eight[mesh]
        assert report["shape"] == kernel and report["spec"] == spec, mesh
        assert report["shard_shapes"] == shard_shapes and report["optimizer_spec"] == spec, mesh
        # What the first device really holds is what describe's rule says.
        assert report["bytes_on_first_device"] == report["bytes_per_device_rule"], mesh
    assert (
        meshes_of_eight["data=2 x fsdp=4"]["bytes_on_first_device"]
        < meshes_of_eight["data=8"]["bytes_on_first_device"] / 3
    )


# -- launch.py across meshes and processes -----------------------------------------


def _assert_close(run_dir: Path, reference_dir: Path, exact: bool = False) -> None:
    for leaf, reference in zip(final_params(run_dir), final_params(reference_dir), strict=True):
        if exact:
            np.testing.assert_array_equal(leaf, reference)
        else:
            np.testing.assert_allclose(leaf, reference, rtol=0, atol=TOLERANCE)


def _command(run_dir: Path, data_dir: str, *overrides: str) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "launch.py"),
        f"hydra.run.dir={run_dir}",
        f"data.data_dir={data_dir}",
        "data.augment.crop_padding=1",  # augmented: each process draws for the whole global batch
        "hardware.mesh.fsdp_min_size=1024",  # the MLP's kernels are sharded when fsdp > 1
        *TINY,
        *overrides,
    ]


def _launch(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env=environment_with_tests(), capture_output=True, text=True, timeout=300)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_two_processes(
    command: list[str], per_process: tuple = ((), ()), ids: tuple[int, int] = (0, 1)
) -> list[subprocess.Popen]:
    """``command`` as processes ``ids`` of a 2-process run on 127.0.0.1 (2 CPU
    devices each; ``per_process`` overrides for each)."""
    cluster = ("hardware.cpu_devices=2", f"hardware.coordinator_address=127.0.0.1:{_free_port()}")
    return [
        subprocess.Popen(
            [*command, *cluster, "hardware.num_processes=2", f"hardware.process_id={ids[index]}", *per_process[index]],
            cwd=ROOT,
            env=environment_with_tests(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]


def _finish(processes: list[subprocess.Popen]) -> list[tuple[int, str]]:
    """Each process's exit code and stderr (all are killed if one outlives 300 s)."""
    results = []
    for process in processes:
        try:
            _, stderr = process.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise
        results.append((process.returncode, stderr))
    return results


def _launch_two_processes(command: list[str], per_process: tuple = ((), ())) -> list[tuple[int, str]]:
    """``command`` as processes 0 and 1 of a 2-process run; their exit codes and stderr."""
    return _finish(_start_two_processes(command, per_process))


def _jaxclf_lines(stderr: str) -> list[str]:
    """What a run says to its user on stderr, less its log records (``[time][logger][level] - ...``)."""
    return [line for line in stderr.splitlines() if not line.startswith("[") and line.strip()]


@pytest.mark.slow  # five launches, ~75 s
def test_checkpoints_move_between_meshes(tmp_path, data_dir):
    eight = ("hardware.cpu_devices=8", "hardware.mesh.fsdp=2")
    reference = tmp_path / "eight"
    assert _launch(_command(reference, data_dir, *eight)).returncode == 0
    assert checkpoint_steps(reference) == [20, 40, 60]

    # The same run, stopped after step 40 on 8 devices, finished on 1.
    resumed = tmp_path / "one"
    shutil.copytree(reference / "checkpoints", resumed / "checkpoints")
    shutil.rmtree(resumed / "checkpoints" / "60")
    result = _launch(_command(resumed, data_dir, "hardware.cpu_devices=1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming from the checkpoint of step 40" in result.stdout
    _assert_close(resumed, reference)
    summaries = [json.loads((run / "summary.json").read_text()) for run in (reference, resumed)]
    assert abs(summaries[0]["test"]["loss"] - summaries[1]["test"]["loss"]) < 1e-4

    # mode=evaluate of the 8-device run on a 2-device fsdp mesh.
    result = _launch(_command(reference, data_dir, "mode=evaluate", "hardware.cpu_devices=2", "hardware.mesh.fsdp=2"))
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = json.loads((reference / "evaluation.json").read_text())
    assert evaluation["steps"] == 60
    assert abs(evaluation["test"]["loss"] - summaries[0]["test"]["loss"]) < 1e-4

    # The other way: the run finished on 1 device teaches on 8 (data=2 x fsdp=4).
    student = tmp_path / "student"
    eight_fsdp4 = ("hardware.cpu_devices=8", "hardware.mesh.fsdp=4")
    result = _launch(_command(student, data_dir, "loss=distill", f"loss.teacher={resumed}", *eight_fsdp4))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((student / "summary.json").read_text())["test"]["accuracy"] > 0.5


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, data_dir) -> Path:
    """An uninterrupted 2-process run: 2 processes x 2 CPU devices, process
    ranks and process 0's address read by ``jax.distributed`` from a SLURM
    environment, as under ``srun``."""
    run_dir = tmp_path_factory.mktemp("two_processes")
    command = [*_command(run_dir, data_dir), "hardware.cpu_devices=2", "hardware.distributed=true"]
    slurm = {"SLURM_JOB_ID": str(_free_port()), "SLURM_STEP_NODELIST": "localhost", "SLURM_NTASKS": "2"}
    processes = [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment_with_tests(**slurm, SLURM_PROCID=str(index), SLURM_LOCALID=str(index)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    results = [(process.wait(timeout=300), process.communicate()[1]) for process in processes]
    for code, stderr in results:
        assert code == 0, stderr[-3000:]
    assert "Process 1 of 2; 4 devices in all" in (run_dir / "launch.log").read_text()
    return run_dir


@pytest.mark.slow  # a 2-process and a 4-device run, ~40 s
def test_two_processes_match_one_process_with_four_devices(tmp_path, data_dir, two_process_run):
    one_process = tmp_path / "four_devices"
    assert _launch(_command(one_process, data_dir, "hardware.cpu_devices=4")).returncode == 0
    _assert_close(two_process_run, one_process)
    two, one = (json.loads((run / "summary.json").read_text()) for run in (two_process_run, one_process))
    assert two["test"]["accuracy"] == one["test"]["accuracy"]
    assert abs(two["test"]["loss"] - one["test"]["loss"]) < 1e-4
    # Process 0 alone wrote the run's files.
    assert len(list(two_process_run.glob("events.out.tfevents.*"))) == 1
    assert len(list(two_process_run.rglob("summary.json"))) == 1
    assert not list(two_process_run.rglob("failure.json"))


@pytest.mark.slow  # two 2-process launches, ~40 s
def test_sigterm_to_one_process_stops_both_at_one_step_and_both_resume(tmp_path, data_dir, two_process_run):
    command = _command(tmp_path, data_dir)
    sigterm_to_process_1_at_30 = (
        "+callbacks.preempt._target_=conftest.SignalAtStep",
        "+callbacks.preempt.step=30",
        "+callbacks.preempt.process=1",
        f"+callbacks.preempt.signal_number={int(signal.SIGTERM)}",
    )
    steps = []
    for code, stderr in _launch_two_processes([*command, "trainer.steps_per_call=10", *sigterm_to_process_1_at_30]):
        assert code == 128 + signal.SIGTERM, stderr[-3000:]
        [message] = [line for line in stderr.splitlines() if line.startswith("jaxclf: stopped:")]
        steps.append(int(re.search(r"stopped at step (\d+) of 60", message).group(1)))
    # Sent after the call that ends at step 30; both processes learn of it at the end of the next call.
    assert steps == [40, 40] and checkpoint_steps(tmp_path) == [20, 40]
    for code, stderr in _launch_two_processes(command):  # the same command, both processes
        assert code == 0, stderr[-3000:]
    _assert_close(tmp_path, two_process_run, exact=True)  # the same mesh: exact resume


@pytest.mark.slow  # one 2-process launch, ~15 s
def test_sigterm_to_one_process_acts_within_one_call_without_callbacks(tmp_path, data_dir):
    command = [
        *_command(tmp_path, data_dir, "callbacks=none", "trainer.steps_per_call=5"),
        "+callbacks.preempt._target_=conftest.SignalAtStep",
        "+callbacks.preempt.step=12",
        "+callbacks.preempt.process=1",
        f"+callbacks.preempt.signal_number={int(signal.SIGTERM)}",
    ]
    command = [argument for argument in command if not argument.startswith("callbacks.")]  # TINY's: no such callback
    for code, stderr in _launch_two_processes(command):
        assert code == 128 + signal.SIGTERM, stderr[-3000:]
        [message] = [line for line in stderr.splitlines() if line.startswith("jaxclf: stopped:")]
        # Sent after the call ending at step 15; every process learns of it at the end of the next call.
        assert message.startswith("jaxclf: stopped: SIGTERM received: stopped at step 20 of 60"), message
    assert checkpoint_steps(tmp_path) == [20]


@pytest.mark.slow  # one 2-process launch, ~20 s
def test_a_nonfinite_step_stops_every_process(tmp_path, data_dir):
    command = _command(tmp_path, data_dir, "optim.learning_rate=1e30")
    for code, stderr in _launch_two_processes(command):
        assert code == 3, stderr[-3000:]
        assert "non-finite loss or gradients at step" in stderr
    assert not (tmp_path / "summary.json").exists()


def test_only_process_zero_records_a_failure(tmp_path, monkeypatch):
    from jaxclf import run_dir

    monkeypatch.setattr(jax, "process_index", lambda: 1)
    run_dir.record_failure(str(tmp_path), RuntimeError("boom"))
    assert not (tmp_path / run_dir.FAILURE_FILE).exists()
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    run_dir.record_failure(str(tmp_path), RuntimeError("boom"))
    assert json.loads((tmp_path / run_dir.FAILURE_FILE).read_text())["message"] == "boom"


# -- processes that disagree, or go missing -------------------------------------------


@pytest.mark.slow  # three 2-process launches that stop after joining, ~25 s
@pytest.mark.parametrize(
    "override,process_0_sees,process_1_sees",
    [
        ("seed=1", "data.subset_seed=0 -> 1, seed=0 -> 1", "data.subset_seed=1 -> 0, seed=1 -> 0"),
        ("model.hidden_sizes=[64]", "model.hidden_sizes=[256, 256] -> [64]", "model.hidden_sizes=[64] -> [256, 256]"),
        (
            "trainer.max_steps=80",
            "optim.total_steps=60 -> 80, trainer.max_steps=60 -> 80",
            "optim.total_steps=80 -> 60, trainer.max_steps=80 -> 60",
        ),
    ],
)
def test_processes_given_different_configs_both_stop_in_one_line(
    tmp_path, data_dir, override, process_0_sees, process_1_sees
):
    results = _launch_two_processes(_command(tmp_path, data_dir), per_process=((), (override,)))
    for index, ((code, stderr), seen) in enumerate(zip(results, (process_0_sees, process_1_sees), strict=True)):
        assert code == 2, stderr[-3000:]
        assert _jaxclf_lines(stderr) == [
            f"jaxclf: error: the processes were given different configs: {seen} (process {index} -> process "
            f"{1 - index}); start every process with the same command (only hardware.process_id differs)"
        ]
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow  # one process waits out hardware.distributed_timeout=10
def test_two_processes_with_one_id_stop_in_one_line_each(tmp_path, data_dir):
    """The later one finds the coordinator's port taken at once; the other waits for a process 1 that never comes."""
    command = _command(tmp_path, data_dir, "hardware.distributed_timeout=10")
    lines = []
    for code, stderr in _finish(_start_two_processes(command, ids=(0, 0))):
        assert code == 2, stderr[-3000:]
        [line] = _jaxclf_lines(stderr)
        lines.append(line)
    port_taken = "is in use on this host (another process with hardware.process_id=0, or another program)"
    not_joined = "hardware.distributed_timeout=10: the run's processes did not all join at 127.0.0.1:"
    assert all(port_taken in line or not_joined in line for line in lines), lines


@pytest.mark.slow  # waits out hardware.distributed_timeout=10
def test_a_process_whose_peer_never_starts_stops_in_one_line(tmp_path, data_dir):
    command = [*_command(tmp_path, data_dir, "hardware.distributed_timeout=10"), "hardware.cpu_devices=2"]
    address = f"127.0.0.1:{_free_port()}"
    cluster = (f"hardware.coordinator_address={address}", "hardware.num_processes=2", "hardware.process_id=0")
    result = subprocess.run(
        [*command, *cluster], cwd=ROOT, env=environment_with_tests(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert _jaxclf_lines(result.stderr) == [
        f"jaxclf: error: hardware.distributed_timeout=10: the run's processes did not all join at {address} within "
        "10 s (hardware.num_processes=2); start every process with the same hardware.coordinator_address and "
        "hardware.num_processes, each with its own hardware.process_id"
    ]


@pytest.mark.slow  # a killed 2-process run, then both processes again, ~60 s
def test_a_killed_process_stops_the_other_in_one_line_and_both_resume(tmp_path, data_dir):
    command = _command(tmp_path, data_dir, "hardware.distributed_timeout=20", "trainer.max_steps=400")
    command = [argument for argument in command if not argument.startswith("callbacks.evaluation")]
    processes = _start_two_processes([*command, "trainer.steps_per_call=1", "callbacks.evaluation=null"])
    while not checkpoint_steps_or_none(tmp_path) and processes[0].poll() is None:
        time.sleep(0.2)
    processes[1].send_signal(signal.SIGKILL)
    (code, stderr), (killed, _) = _finish(processes)
    assert killed == -signal.SIGKILL
    assert code == peers.LOST_PEER_EXIT_CODE, stderr[-3000:]
    assert _jaxclf_lines(stderr) == [
        "jaxclf: error: process 1 of 2 stopped answering (no sign of it for 10 s); stopping this process too; "
        "committed checkpoints are intact: start every process again with the same command to resume"
    ]
    saved = checkpoint_steps(tmp_path)
    assert saved and saved[-1] < 400

    # A resume where process 1 was given another seed is refused by both, the checkpoints untouched.
    before = digest(tmp_path / "checkpoints")
    for code, stderr in _launch_two_processes(command, per_process=((), ("seed=1",))):
        assert code == 2 and len(_jaxclf_lines(stderr)) == 1, stderr[-3000:]
    assert digest(tmp_path / "checkpoints") == before

    for code, stderr in _launch_two_processes(command):  # both processes, the same command: resumed
        assert code == 0, stderr[-3000:]
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 400


def checkpoint_steps_or_none(run_dir: Path) -> list[int]:
    return checkpoint_steps(run_dir) if (run_dir / "checkpoints").is_dir() else []
