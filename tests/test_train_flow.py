"""Training end to end with the real Prefect, MLflow (sqlite store + registry) and TensorFlow.

Each model trains one short epoch on the windows of a few real files, logs to a
sqlite MLflow store, registers a version that loads and samples in another process (one for
the module, which only loads and samples), and an identical second call trains nothing (no new
run, no new version).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from musicflow.adapters import workspace
from musicflow.core.catalog import MODEL_NAMES
from musicflow.core.settings import TrainSettings
from musicflow.flows.dataset import encode_flow

pytestmark = pytest.mark.integration

#: What each model logs every epoch (the val_ ones on the validation files).
PER_EPOCH = {
    "rnn": ("loss", "val_nll"),
    "vae": ("loss", "recon_loss", "kl_loss", "val_nll"),
    "gan": ("d_loss", "g_loss", "d_acc_real", "d_acc_fake"),
    "vae-thesis": ("loss", "recon_loss", "kl_loss", "val_loss"),
    "gan-thesis": ("d_loss", "g_loss", "d_acc_real", "d_acc_fake"),
}

SMALL = TrainSettings(epochs=1, batch_size=16, seed=3)  # seconds per model


@pytest.fixture(scope="module")
def tiny_dataset(piano_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The 4 smallest files of the corpus (a few dozen windows), encoded as dataset 'tiny'."""
    home = tmp_path_factory.mktemp("home")
    source = home / "src"
    source.mkdir()
    for f in sorted(piano_dir.rglob("*.mid"), key=lambda p: p.stat().st_size)[:4]:
        shutil.copy(f, source / f.name)
    mp = pytest.MonkeyPatch()
    mp.setenv("MUSICFLOW_HOME", str(home))
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
    (home / "mlruns").mkdir()
    encode_flow(
        source=source,
        dataset="tiny",
        out_dir=workspace.rolls_dir("tiny"),
        cache_dir=workspace.cache_dir(),
    )
    yield home, "tiny"
    mp.undo()


LOADER = """
import json, sys, traceback
import mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
for line in sys.stdin:
    try:
        m = mlflow.pyfunc.load_model(line.strip())
        out = m.predict(pd.DataFrame({"n": [3], "seed": [1]}))
        answer = [list(out.shape), str(out.dtype)]
    except Exception:
        answer = traceback.format_exc()[-2000:]
    print("loaded:", json.dumps(answer), flush=True)
"""


class Loader:
    """A process that loads registered versions with MLflow and samples 3 windows of each, as
    a user's would: not the process that trained them. One for the module, as its start
    (importing TensorFlow and MLflow) is most of what a load costs."""

    def __init__(self, tracking_uri: str, log: Path) -> None:
        self.log = log
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", LOADER, tracking_uri],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )

    def sample(self, model_uri: str) -> object:
        """The sample's [shape, dtype], or the traceback of the load or the sampling."""
        self.proc.stdin.write(model_uri + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:  # MLflow or TensorFlow may print first
            if line.startswith("loaded: "):
                return json.loads(line.removeprefix("loaded: "))
        return f"the loader exited ({self.proc.wait()}): {self.log.read_text()[-2000:]}"

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def loader(tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    home, _ = tiny_dataset
    started = Loader(
        f"sqlite:///{home / 'mlruns' / 'mlflow.db'}", tmp_path_factory.mktemp("l") / "log"
    )
    yield started
    started.close()


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_model_trains_logs_registers_reloads_and_caches(
    tiny_dataset, loader: Loader, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from musicflow.flows.pipeline import train_flow

    home, dataset = tiny_dataset
    monkeypatch.setenv("MUSICFLOW_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", workspace.tracking_uri())
    result = train_flow(dataset=dataset, model=model, training=SMALL)

    client = MlflowClient(tracking_uri=workspace.tracking_uri())
    run = client.get_run(result["run_id"])
    params, metrics = run.data.params, run.data.metrics
    info = json.loads((workspace.rolls_dir(dataset) / "dataset.json").read_text())
    assert params["dataset_digest"] == info["digest"]
    assert params["encoding.name"] == "roll-v1" and params["model"] == model
    assert any(k.startswith("model.") for k in params) and "code_version" in params
    # the epochs that ran, the planned ones once, and no setting logged twice
    assert params["epochs"] == "1" and params["stopped_by"] == "epochs"
    assert params["kept_epoch"] == "1"
    # 4 files: 1 held out, the other 3 fitted or validating, at least one of each
    fitted, validating = int(params["n_train_files"]), int(params["n_validation_files"])
    assert params["n_heldout_files"] == "1" and fitted + validating == 3 and fitted and validating
    assert params["max_epochs"] == "1"
    assert not {"model.seed", "model.epochs", "model.batch_size"} & set(params)
    # the UI opens the experiment on its training runs, with a saved view and descriptions
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "mlflow.sharedViewState.musicflow" in experiment.tags
    summary = f"**{model}** trained for 1 of 1 epochs on **{dataset}**"
    assert summary in run.data.tags["mlflow.note.content"]
    version = client.get_model_version(f"{dataset}-{model}", "1")
    assert version.description.startswith(summary)  # the same run summary
    assert run.data.tags["musicflow.evaluation_metrics"].startswith("pitch_hist_l1,")
    for key in PER_EPOCH[model]:
        assert key in metrics, key
    if model != "gan" and model != "gan-thesis":  # a likelihood model: its held-out NLL
        assert math.isfinite(metrics["heldout_nll"])
    for key in ("pitch_hist_l1", "onenn_accuracy", "blank_rate", "copy_rate"):
        assert key in metrics and f"{key}_baseline" in metrics, key
    assert run.inputs.dataset_inputs[0].dataset.digest == info["digest"][:32]
    assert run.data.tags["musicflow.code_version"]
    assert Path(result["report"]).is_file()
    versions = client.search_model_versions(f"name = '{dataset}-{model}'")
    assert [str(v.version) for v in versions] == ["1"]

    # The registered version loads and samples in another process.
    assert loader.sample(result["model_uri"]) == [[3, 9216], "uint8"]

    # An identical call trains nothing: same run, no new run, no new version.
    n_runs = len(client.search_runs([run.info.experiment_id]))
    again = train_flow(dataset=dataset, model=model, training=SMALL)
    assert again["run_id"] == result["run_id"]
    assert len(client.search_runs([run.info.experiment_id])) == n_runs
    assert len(client.search_model_versions(f"name = '{dataset}-{model}'")) == 1


def test_distributed_mixed_precision_training_loads_and_samples_on_a_cpu(
    tiny_dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train --distribute --mixed-precision`` through the real flow: where it ran is logged
    and reported, and the registered version loads and samples in a fresh float32 process.
    (CI has no GPU: one replica on the CPU in bfloat16; tests/test_accelerate.py runs two.)"""
    import tensorflow as tf
    from mlflow import MlflowClient

    from musicflow.adapters.accelerate import precision_policy
    from musicflow.flows.pipeline import train_flow

    home, dataset = tiny_dataset
    monkeypatch.setenv("MUSICFLOW_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", workspace.tracking_uri())
    training = TrainSettings(
        epochs=1, batch_size=16, seed=11, distribute=True, mixed_precision=True
    )
    result = train_flow(dataset=dataset, model="rnn", training=training)
    gpus = len(tf.config.list_logical_devices("GPU"))
    params = (
        MlflowClient(tracking_uri=workspace.tracking_uri()).get_run(result["run_id"]).data.params
    )
    assert params["distribute"] == "True"
    assert params["precision"] == precision_policy(True, gpus)
    assert params["replicas"] == str(max(gpus, 1))
    assert params["precision"] in Path(result["report"]).read_text()

    _samples_in_a_fresh_cpu_process(result["model_uri"])


def _samples_in_a_fresh_cpu_process(model_uri: str) -> None:
    """The registered version loads with MLflow and samples 3 windows in a new process with no
    GPU visible, whatever this machine has."""
    code = (
        "import mlflow, pandas as pd, sys; mlflow.set_tracking_uri(sys.argv[1]);"
        "m = mlflow.pyfunc.load_model(sys.argv[2]);"
        "out = m.predict(pd.DataFrame({'n': [3], 'seed': [1]}));"
        "print(out.shape, out.dtype)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, workspace.tracking_uri(), model_uri],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(3, 9216) uint8" in done.stdout


@pytest.mark.parametrize("model", ["rnn", "vae"])
def test_generate_samples_a_registered_frame_model_without_tensorflow(
    tiny_dataset, model: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Registration stores the numpy sampler with its digests; ``musicflow generate`` (a real
    subprocess) writes its pieces without importing TensorFlow, Keras, MLflow or Prefect."""
    from mlflow import MlflowClient

    from musicflow.adapters.tracking import MODEL_FILES_TAG
    from musicflow.flows.pipeline import train_flow

    home, dataset = tiny_dataset
    monkeypatch.setenv("MUSICFLOW_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", workspace.tracking_uri())
    result = train_flow(dataset=dataset, model=model, training=SMALL)
    client = MlflowClient(tracking_uri=workspace.tracking_uri())
    version = client.get_model_version(f"{dataset}-{model}", "1")
    assert {"sampler.json", "sampler.npz"} <= set(json.loads(version.tags[MODEL_FILES_TAG]))

    out = tmp_path / "pieces"
    code = (
        "import json, sys\n"
        "from musicflow.cli import main\n"
        "code = main(['generate', '--model-uri', sys.argv[1], '-n', '2', '--out', sys.argv[2]])\n"
        "heavy = ('tensorflow', 'keras', 'mlflow', 'prefect')\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, result["model_uri"], str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MUSICFLOW_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert sorted(p.name for p in out.glob("*.mid")) == ["sample-001.mid", "sample-002.mid"]
    assert "absl" not in done.stderr and "oneDNN" not in done.stderr
