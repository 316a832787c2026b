"""Every registered model on every registered source whose inputs it takes (new models and sources
join automatically): the source's official files written tiny, loaded, the model built for their
shape and classes and run forward on a real batch, giving ModelOutput as the loop reads it."""

import re

import pytest
import torch

from tidal.data.sources import list_sources, load_source, source_info
from tidal.models import ModelOutput, build_model, list_models, model_capabilities, model_info

_KIND = {3: "images", 1: "vectors"}  # dimensions of one input -> the kind a model declares it takes


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_and_runs_on_every_source_it_takes(name, tmp_path, writers):
    ran = []
    for i, form in enumerate(list_sources()):
        root = tmp_path / str(i)
        spec = writers["by_source"][form](root)
        size = 16 if source_info(spec).resizes else None  # decode small: the default 224 costs seconds here
        splits = load_source(spec, data_dir=root, download=False, image_size=size, workers=0)
        shape, classes = splits.train.input_shape, splits.train.num_classes
        if _KIND[len(shape)] not in model_info(name).inputs:
            with pytest.raises(ValueError, match=rf"model {name!r} needs .*got input_shape={re.escape(str(shape))}"):
                build_model(name, classes, shape)
            continue
        torch.manual_seed(0)
        model = build_model(name, classes, shape, width=2).eval()
        with torch.no_grad():
            out = model(splits.train.inputs(torch.arange(2)))
        assert isinstance(out, ModelOutput) and out.logits.shape == (2, classes) and out.logits.isfinite().all()
        assert out.embedding.shape == (2, model.embedding_dim)
        assert [f.shape[1] for f in out.features] == list(model.feature_channels)
        assert {"features", "embedding"} <= model_capabilities(model)  # what every strategy may ask of it
        ran.append(form)
    assert ran, f"no registered source gives model {name!r} the inputs it takes ({model_info(name).inputs})"
