import sys
import types

import pytest

from tidal.results import CycleRecord
from tidal.tracking import MlflowTracker, TensorBoardTracker, check_trackers, make_trackers

REC = CycleRecord("fashion-mnist", 10.0, "tidal-entropy", 1, 2, 1500, 0.8, [1], [1], [2], [0.5], 3.0, 1.0, 0.5,
                  0.1, 0.0)


def test_missing_packages_say_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ValueError, match="pip install mlflow"):
        make_trackers(tmp_path, ["mlflow"])
    with pytest.raises(ValueError, match="pip install tensorboard"):
        make_trackers(tmp_path, ("tensorboard",))
    with pytest.raises(ValueError, match="pip install mlflow"):
        check_trackers(["mlflow"])
    assert make_trackers(tmp_path, []) == []
    check_trackers(())


@pytest.mark.parametrize("names", ["mlflow", ["mlflow", "wandb"], [True], True, None])
def test_tracker_names_are_checked(names):
    with pytest.raises(ValueError, match=r"trackers=.* must be a list of names from mlflow, tensorboard"):
        check_trackers(names)


def test_mlflow_gets_the_cycle_metrics(monkeypatch, tmp_path):
    calls = []
    fake = types.SimpleNamespace(
        set_tracking_uri=lambda uri: calls.append(("uri", uri)),
        set_experiment=lambda name: calls.append(("exp", name)),
        start_run=lambda run_name, tags: calls.append(("start", run_name)),
        log_metrics=lambda metrics, step: calls.append(("log", metrics["accuracy"], metrics["n_labeled"], step)),
        end_run=lambda: calls.append(("end",)),
    )
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    t = MlflowTracker(tmp_path)
    t.log_cycle(REC)
    t.close()
    assert calls[0] == ("uri", (tmp_path / "mlruns").resolve().as_uri())
    assert ("start", "fashion-mnist/IR10/tidal-entropy/seed1") in calls and ("log", 0.8, 1500.0, 2) in calls
    assert calls[-1] == ("end",)


def test_tensorboard_gets_the_cycle_metrics(monkeypatch, tmp_path):
    scalars = []

    class Writer:
        def __init__(self, log_dir):
            scalars.append(("dir", log_dir))

        def add_scalar(self, tag, value, global_step):
            scalars.append((tag, value, global_step))

        def flush(self):
            pass

        def close(self):
            scalars.append(("closed",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    t = TensorBoardTracker(tmp_path / "tb")
    t.log_cycle(REC)
    t.close()
    assert ("fashion-mnist/IR10/tidal-entropy/seed1/accuracy", 0.8, 1500) in scalars and scalars[-1] == ("closed",)
