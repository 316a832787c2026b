import dataclasses

import pytest

from tidal.config import PRESETS, ALConfig, ExperimentConfig, StrategyConfig, TrainConfig, preset
from tidal.experiment import validate_experiment


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_roundtrip(name):
    cfg = PRESETS[name].validate()
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg


def test_paper_preset_matches_the_paper():
    t, a = PRESETS["paper"].train, PRESETS["paper"].al
    assert (t.epochs, t.lr, t.momentum, t.weight_decay, t.batch_size, t.width) == (100, 0.1, 0.9, 5e-4, 128, 64)
    assert int(t.lr_decay_at * t.epochs) == 80 and t.lr_decay == 0.1 and a.subset == 10_000
    assert PRESETS["paper"].strategy.tidal_weight == 1.0


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(methods=("tidal", "random")), "unknown method 'tidal'; choose from: .*tidal-entropy"),
        (dict(datasets=("mnist",)), "unknown dataset 'mnist'.*choose one of: .*fashion-mnist"),
        (dict(imbalances=(0.5,)), "imbalance=0.5 must be >= 1"),
        (dict(al=ALConfig(subset=0)), "subset=0 must be > 0"),
        (dict(al=ALConfig(subset=-5)), "subset=-5 must be > 0"),
        (dict(al=ALConfig(initial=0)), "initial=0 must be >= 2"),
        (dict(al=ALConfig(budget=2000, subset=1000)), "subset=1000 must be >= budget=2000"),
        (dict(al=ALConfig(retrain="warm")), "retrain='warm'"),
        (dict(train=TrainConfig(epochs=0)), "epochs=0 must be >= 1"),
        (dict(train=TrainConfig(batch_size=1)), "batch_size=1 must be >= 2"),
        (dict(seeds=()), "no seed given"),
        (dict(seeds=(1, 1)), "repeat"),
        (dict(strategy=StrategyConfig(tidal_weight=-1.0)), "tidal_weight=-1.0 must be"),
        (dict(strategy=StrategyConfig(mc_samples=0)), "mc_samples=0 must be >= 1"),
        (dict(strategy=StrategyConfig(cal_threshold=1.5)), r"cal_threshold=1.5 must be in \[0, 1\]"),
        (dict(strategy=StrategyConfig(cal_threshold=-0.1)), r"cal_threshold=-0.1 must be in \[0, 1\]"),
        (dict(strategy=StrategyConfig(diverse_prefilter=0.5)), r"diverse_prefilter=0.5 must be a finite number >= 1"),
        (dict(strategy=StrategyConfig(diverse_prefilter=float("inf"))), r"diverse_prefilter=inf must be"),
    ],
)
def test_bad_values_are_quoted(change, message):
    with pytest.raises(ValueError, match=message):
        validate_experiment(dataclasses.replace(PRESETS["quick"], **change))


def test_identity_ignores_what_may_grow():
    a = preset("quick")
    b = preset("quick", methods=("random",), seeds=(5, 6), imbalances=(10.0,))
    assert a.identity() == b.identity()
    c = dataclasses.replace(a, train=dataclasses.replace(a.train, epochs=3))
    assert a.identity() != c.identity()
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        preset("fast")


def test_toml_config_file(tmp_path):
    from tidal.config import load_config_file

    f = tmp_path / "exp.toml"
    f.write_text('preset = "quick"\nmethods = ["tidal-margin", "random"]\nseeds = [0, 1, 2]\n'
                 'imbalances = [1, 10, 100]\n[train]\nepochs = 7\n[al]\nbudget = 250\n')
    cfg = load_config_file(str(f)).validate()
    assert cfg.methods == ("tidal-margin", "random") and cfg.seeds == (0, 1, 2)
    assert cfg.imbalances == (1, 10, 100) and cfg.train.epochs == 7 and cfg.train.width == 8
    assert cfg.al.budget == 250 and cfg.al.initial == 500


def test_yaml_config_file(tmp_path):
    pytest.importorskip("yaml")
    from tidal.config import load_config_file

    f = tmp_path / "exp.yaml"
    f.write_text("preset: paper\nmethods: [random]\ntrain:\n  epochs: 3\n")
    cfg = load_config_file(str(f))
    assert cfg.methods == ("random",) and cfg.train.epochs == 3 and cfg.train.width == 64


@pytest.mark.parametrize(
    "text,message",
    [
        ("methods = [\n", "invalid TOML"),
        ("method = ['random']\n", "unknown key 'method'; valid: preset, datasets"),
        ("[train]\nepoch = 3\n", r"unknown field\(s\) \['epoch'\] in \[train\]"),
        ("preset = 'slow'\n", "unknown preset 'slow'"),
    ],
)
def test_bad_config_files(tmp_path, text, message):
    from tidal.config import load_config_file

    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config_file(str(f))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config_file(str(tmp_path / "missing.toml"))
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="must end in .toml"):
        load_config_file(str(tmp_path / "x.json"))


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(train=TrainConfig(epochs="40")), "train.epochs='40' must be of type int"),
        (dict(al=ALConfig(budget=500.5)), "al.budget=500.5 must be of type int"),
        (dict(train=TrainConfig(flip="yes")), "train.flip='yes' must be of type bool"),
        (dict(seeds=(0, "1")), r"seeds=\(0, '1'\) must be of type tuple\[int, ...\]"),
        (dict(seeds=(-1,)), r"seeds \[-1\] must be >= 0"),
        (dict(al=ALConfig(initial=1)), "initial=1 must be >= 2"),
        (dict(methods=("bald",), strategy=StrategyConfig(mc_samples=1)), "mc_samples=1: bald needs >= 2"),
        (dict(methods=("bald",), strategy=StrategyConfig(dropout=0.0)), "dropout=0.0: bald needs dropout > 0"),
    ],
)
def test_types_and_method_specific_checks(change, message):
    with pytest.raises(ValueError, match=message):
        validate_experiment(dataclasses.replace(PRESETS["quick"], **change))


def test_ints_are_accepted_for_floats_and_bald_defaults_pass():
    cfg = dataclasses.replace(PRESETS["quick"], imbalances=(10,), methods=("bald", "random"),
                              train=TrainConfig(lr=1))
    assert cfg.validate() is cfg
    # mc_samples=1 is fine when no method needs MC samples
    dataclasses.replace(PRESETS["quick"], strategy=StrategyConfig(mc_samples=1)).validate()


def test_config_imports_nothing_that_imports_it_back():
    """config is a leaf: validating names against the registries lives in tidal.experiment, so
    no import circle joins config and strategies (or data), and importing config loads no torch."""
    import subprocess
    import sys

    code = "import sys, tidal.config; print(sorted(m for m in sys.modules if m.startswith('tidal')), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "['tidal', 'tidal.config'] False", out


def test_validate_experiment_checks_names_and_model():
    with pytest.raises(ValueError, match="unknown method 'tidal-entropyy'"):
        validate_experiment(preset("quick", methods=("tidal-entropyy",)))
    with pytest.raises(ValueError, match="unknown model spec 'resnet81'"):
        validate_experiment(dataclasses.replace(PRESETS["quick"], train=TrainConfig(model="resnet81")))
    assert validate_experiment(preset("quick", datasets=("mine",)), datasets=("mine",)).datasets == ("mine",)


def test_a_config_file_that_is_not_utf8_names_the_file_and_the_fix(tmp_path):
    from tidal.config import load_config_file

    f = tmp_path / "latin1.toml"
    f.write_bytes("preset = 'quick'\n# caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.toml: byte 0xe9 on line 2 is not UTF-8 text; save the file as "
                                         r"UTF-8"):
        load_config_file(str(f))


def test_preset_section_overrides_merge_a_dict_and_refuse_other_types():
    from tidal.config import ALConfig, TrainConfig

    cfg = preset("quick", train={"epochs": 15, "batch_size": 64}, al={"initial": 100})
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.width) == (15, 64, 8)  # the preset's width stays
    assert (cfg.al.initial, cfg.al.budget) == (100, 500)
    with pytest.warns(UserWarning, match=r"width=64 \(the TrainConfig default\) replaces the preset's 8"):
        whole = preset("quick", train=TrainConfig(epochs=15))
    assert whole.train == TrainConfig(epochs=15)  # a whole section is used as it is, as before
    with pytest.raises(TypeError, match=r"al must be a dict of ALConfig fields .* not a list"):
        preset("quick", al=[1, 2])
    with pytest.raises(TypeError, match="train must be a dict of TrainConfig fields"):
        preset("quick", train=ALConfig())
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['epoch'\] of TrainConfig"):
        preset("quick", train={"epoch": 3})
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['seed'\]"):
        preset("quick", seed=(0,))
    from tidal.config import ExperimentConfig

    with pytest.raises(TypeError, match=r"train=\{'epochs': 3\} must be a TrainConfig, not a dict; build it as "
                                        r"TrainConfig\(...\), or pass train=\{...\} to preset\(\)"):
        ExperimentConfig(train={"epochs": 3}).validate()


def test_adapt_train_leaves_the_fashion_mnist_protocols_as_configured():
    """Issue 21 case 22: the stored numbers do not move. The quick and paper presets on 28x28 (and
    32x32) images with 500+ labels, and the regression guard's tiny config (batch 32 on 40 and 60
    labels), train with exactly the configured settings (the same object)."""
    from tidal.config import adapt_train

    for name in ("quick", "paper", "paper-cifar10"):
        train = PRESETS[name].train
        for n in (500, 1000, 4500, 10000):
            for shape in ((1, 28, 28), (3, 32, 32)):
                assert adapt_train(train, n, shape) == (train, [])
                assert adapt_train(train, n, shape)[0] is train
    tiny = TrainConfig(epochs=2, width=4, batch_size=32, eval_batch_size=256)
    for n in (40, 60):
        assert adapt_train(tiny, n, (1, 28, 28))[0] is tiny
    assert adapt_train(PRESETS["quick"].train, 50, (64,))[0].crop_padding == 4  # feature vectors: no crop to fit


def test_adapt_train_fits_small_label_sets_and_small_images():
    """Issue 21 case 22: 50 labels at batch 128 made one SGD step per epoch, and crop padding 4 on
    8x8 digits; the cycle trains with batch 25 (two steps) and padding 1, and says so."""
    from tidal.config import adapt_train

    quick = PRESETS["quick"].train
    fitted, notes = adapt_train(quick, 50, (1, 8, 8))
    assert (fitted.batch_size, fitted.crop_padding) == (25, 1)
    assert dataclasses.replace(fitted, batch_size=128, crop_padding=4) == quick  # nothing else changes
    assert notes == ["batch 25 instead of 128 (50 labels would make 1 SGD step per epoch; at least 2)",
                     "crop padding 1 instead of 4 px (at most 1/7 of the 8-px image side)"]
    assert adapt_train(quick, 129, (1, 28, 28))[0].batch_size == 65  # [128, 1] trains as one batch of 129
    assert adapt_train(quick, 130, (1, 28, 28))[0] is quick  # [128, 2]: two steps
    assert adapt_train(quick, 3, (1, 28, 28))[0].batch_size == 2  # never below 2 (batch norm)
    assert adapt_train(quick, 40, (1, 28, 28), min_batch=32)[0].batch_size == 32  # torchrun: 2 per rank
    assert adapt_train(quick, 500, (3, 5, 5))[0].crop_padding == 0  # smaller than 7 px: no crop
