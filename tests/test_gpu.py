"""The GPU fast path on CUDA: bfloat16 autocast, channels-last, pinned-memory prefetch of the
disk-backed path, and ``--jobs`` workers sharing one GPU.

Every test that needs a GPU has ``cuda`` in its name and is skipped without one, so
``pytest -k cuda`` (``benchmarks/gpu_check.sh``) selects the CUDA tests of the whole suite.
The wiring of the pinned-memory path is checked on the CPU as well.
"""

import dataclasses
import math

import pytest
import torch

from tidal.config import ALConfig, DataConfig, TrainConfig, preset
from tidal.data import files
from tidal.experiment import run_experiment
from tidal.models import ResNet18
from tidal.results import DB_NAME, ResultStore
from tidal.train import train_model

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
TC = TrainConfig(epochs=2, width=4, batch_size=16, eval_batch_size=64)


class _RecordingLoader:
    """Stands in for DataLoader: records its keyword arguments and yields nothing."""

    calls: list[dict] = []

    def __init__(self, dataset, **kwargs):
        type(self).calls.append(kwargs)

    def __iter__(self):
        return iter(())


@pytest.mark.parametrize("device,pinned", [("cpu", False), ("cuda", True), ("cuda:1", True)])
def test_disk_batches_are_pinned_exactly_when_they_go_to_a_gpu(monkeypatch, device, pinned):
    _RecordingLoader.calls = []
    monkeypatch.setattr(files, "DataLoader", _RecordingLoader)
    decode = lambda ids, seed: torch.zeros((len(ids), 3, 4, 4), dtype=torch.uint8)  # noqa: E731
    assert list(files.decode_ahead(decode, [torch.arange(3)], False, None, 0, torch.device(device))) == []
    assert _RecordingLoader.calls[0]["pin_memory"] is pinned


def _train(split, config: TrainConfig, device: torch.device):
    torch.manual_seed(0)
    model = ResNet18(split.num_classes, config.width, split.image_shape[0]).to(device)
    stats = train_model(model, None, split, torch.arange(64), config, torch.Generator().manual_seed(0))
    return stats.final_loss, [p.detach().cpu() for p in model.parameters()]


@needs_cuda
def test_bf16_and_channels_last_train_on_cuda(tiny_splits):
    dev = torch.device("cuda")
    split = tiny_splits.train.to(dev)
    loss, weights = _train(split, TC, dev)
    loss2, weights2 = _train(split, TC, dev)
    assert loss == loss2 and all(torch.equal(a, b) for a, b in zip(weights, weights2))  # float32 CUDA: deterministic
    loss16, _ = _train(split, dataclasses.replace(TC, amp="bf16"), dev)
    assert math.isfinite(loss16) and abs(loss16 - loss) < 0.5
    loss_cl, weights_cl = _train(split, dataclasses.replace(TC, channels_last=True), dev)
    assert loss_cl == pytest.approx(loss, rel=1e-3)


@needs_cuda
def test_file_dataset_prefetches_to_cuda_the_bytes_it_decodes_on_cpu(tmp_path):
    from PIL import Image

    paths = []
    g = torch.Generator().manual_seed(0)
    for i in range(6):
        path = tmp_path / f"{i}.png"
        Image.fromarray(torch.randint(0, 256, (10, 12, 3), generator=g, dtype=torch.uint8).numpy()).save(path)
        paths.append(path)
    split = files.FileDataset(paths, torch.arange(6) % 2, 2, 8, (0.5,) * 3, (0.25,) * 3, resize_eval=False,
                              num_workers=2)
    on_gpu = split.to("cuda")
    ids = [torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])]
    for (i_cpu, x_cpu), (i_gpu, x_gpu) in zip(split.batches(ids), on_gpu.batches(ids)):
        assert i_gpu.is_cuda and x_gpu.is_cuda
        assert torch.equal(i_cpu, i_gpu.cpu())
        torch.testing.assert_close(x_cpu, x_gpu.cpu())


@needs_cuda
@pytest.mark.slow
def test_jobs_share_one_cuda_device_with_the_numbers_of_a_serial_run(tiny_splits, tmp_path):
    """``--jobs 2 --device cuda``: both workers train on the one GPU, deterministically."""
    cfg = preset("quick", methods=("tidal-entropy", "random"), seeds=(0,),
                 train=TrainConfig(epochs=2, width=4, batch_size=16, eval_batch_size=64),
                 al=ALConfig(initial=20, budget=10, cycles=2, subset=40), data=DataConfig(download=False))
    splits = {"fashion-mnist": tiny_splits}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count (2 jobs on this process's threads)
    try:
        rows = {}
        for jobs in (1, 2):
            out = tmp_path / f"jobs{jobs}"
            run_experiment(cfg, out, device="cuda", progress=False, log=lambda s: None, splits=splits,
                           jobs=jobs)
            with ResultStore(out / DB_NAME) as store:
                rows[jobs] = [(r.method, r.cycle, r.accuracy, r.selected, r.scores) for r in store.records()]
    finally:
        torch.set_num_threads(threads)
    assert rows[1] == rows[2] and len(rows[1]) == 4
