import torch

from tidal.data.augment import random_crop, random_flip, to_float


def test_to_float_normalises():
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    y = to_float(x, (0.5,), (0.25,))
    assert torch.allclose(y, torch.tensor([[[[-2.0, 2.0]]]]))


def test_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).view(2, 1, 5, 5) + 1
    g = torch.Generator().manual_seed(0)
    out = random_crop(x, 2, g)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):  # each output equals some 5x5 window of its own padded image
        windows = padded[i, 0].unfold(0, 5, 1).unfold(1, 5, 1).reshape(-1, 5, 5)
        assert any(torch.equal(w, out[i, 0]) for w in windows)
    assert torch.equal(random_crop(x, 0, g), x)


def test_flip_mirrors_about_half_the_batch():
    x = torch.arange(4, dtype=torch.float32).view(1, 1, 1, 4).repeat(1000, 1, 1, 1)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = (out[:, 0, 0, 0] == 3).sum().item()
    assert 400 < flipped < 600
    assert all(torch.equal(o, x[0]) or torch.equal(o, x[0].flip(2)) for o in out[:20])
