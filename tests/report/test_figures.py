"""Figures from arrays (the paper's Figures 2 and 7), method colours and the ablation's methods."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from tidal.report.figures import ablation_methods, plot_score_distributions, plot_td_prediction_kl
from tidal.report.style import METHOD_COLORS, method_color

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_td_prediction_kl_figure(tmp_path):
    epochs = np.arange(1, 21)
    path = plot_td_prediction_kl(epochs, 2.0 / epochs, 1.5 - 0.02 * epochs, tmp_path / "fig7.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="equal length"):
        plot_td_prediction_kl(epochs, epochs[:-1], epochs, tmp_path / "bad.png")


def _scores(n: int = 400) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    is_tail = rng.random(n) < 0.3
    return {
        "H (snapshot)": rng.normal(0.5, 0.2, n) + 0.05 * is_tail,
        "M (snapshot)": rng.normal(0.4, 0.2, n),
        "H-bar (TD)": rng.normal(0.3, 0.1, n) + 0.5 * is_tail,
        "M-bar (TD)": rng.normal(0.2, 0.1, n) + 0.4 * is_tail,
    }, is_tail


def test_score_distribution_figure_with_kde_and_without_scipy(tmp_path, monkeypatch):
    scores, is_tail = _scores()
    assert plot_score_distributions(scores, is_tail, tmp_path / "kde.png").read_bytes()[:8] == PNG_MAGIC
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # histogram fallback
    assert plot_score_distributions(scores, is_tail, tmp_path / "hist.png").stat().st_size > 10_000


def test_score_distribution_errors(tmp_path):
    scores, is_tail = _scores(50)
    with pytest.raises(ValueError, match="some as head"):
        plot_score_distributions(scores, np.ones(50, dtype=bool), tmp_path / "x.png")
    with pytest.raises(ValueError, match="49 values"):
        plot_score_distributions({"H": np.zeros(49)}, is_tail, tmp_path / "x.png")
    with pytest.raises(ValueError, match="empty"):
        plot_score_distributions({}, is_tail, tmp_path / "x.png")


def test_every_registered_strategy_has_its_own_fixed_colour():
    from tidal.strategies import list_strategies

    names = list(list_strategies())
    assert set(names) <= set(METHOD_COLORS), set(names) - set(METHOD_COLORS)
    assert len({method_color(m) for m in names}) == len(names)
    new = method_color("some-new-method")  # unknown names: a stable, hash-chosen colour
    assert re.fullmatch(r"#[0-9a-f]{6}", new) and method_color("some-new-method") == new


class _Setting:
    def __init__(self, methods: list[str]) -> None:
        self.methods = methods


@pytest.mark.parametrize("methods, expected", [
    (["random", "tidal-entropy", "entropy", "margin"], ["tidal-entropy", "entropy", "margin"]),
    (["random", "tidal-margin", "tidal-exact", "margin"], ["tidal-margin", "tidal-exact", "margin"]),
    (["random", "tidal-entropy"], []),  # no snapshot counterpart
    (["random", "entropy", "margin"], []),  # no TiDAL
])
def test_ablation_uses_only_the_methods_present(methods, expected):
    assert ablation_methods(_Setting(methods)) == expected


def test_ablation_figure_draws_every_ablation_label(synth, tmp_path):
    """Every mathtext label of Figure 6 must parse; all methods reuse entropy's synthetic numbers."""
    import dataclasses

    from tidal.report import summarize
    from tidal.report.figures import ABLATION, plot_ablation

    records = [dataclasses.replace(synth.make_record("entropy", seed, c), method=m)
               for m in ["random", *ABLATION] for seed in (0, 1) for c in range(4)]
    (s,) = summarize(records)
    assert ablation_methods(s) == list(ABLATION)
    assert plot_ablation(s, tmp_path / "ablation.png").read_bytes()[:8] == PNG_MAGIC


@pytest.fixture()
def drawn(monkeypatch):
    """The figures drawn by tidal.report.figures, captured instead of saved: kind -> Figure."""
    import tidal.report.figures as figures

    out = {}

    def capture(fig, path):
        out[path.stem.rsplit("-", 1)[-1]] = fig
        return path

    monkeypatch.setattr(figures, "save_figure", capture)
    return out


def _axes_with_data(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible() and ax.lines]


def test_learning_curves_are_small_multiples_on_shared_axes_with_no_legend_on_the_data(synth, tmp_path, drawn):
    from tidal.report import summarize
    from tidal.report.figures import write_setting_figures

    records = [synth.make_record(m, seed, c) for m in synth.METHODS for seed in synth.SEEDS for c in range(4)]
    (s,) = summarize(records)
    write_setting_figures(s, tmp_path)
    others = ["entropy", "margin", "tidal-entropy"]  # every method but random, one panel each
    for kind in ("relative", "accuracy"):
        panels = _axes_with_data(drawn[kind])
        assert [ax.get_title() for ax in panels] == others, kind
        assert len({ax.get_ylim() for ax in panels}) == 1 and len({ax.get_xlim() for ax in panels}) == 1
        assert all(ax.get_legend() is None for ax in panels)
    # each accuracy panel: random (grey, dashed) and the method, nothing else
    assert all(len(ax.lines) == 2 for ax in _axes_with_data(drawn["accuracy"]))
    for kind in ("ablation", "timing"):  # legends placed outside the axes
        for ax in drawn[kind].axes:
            legend = ax.get_legend()
            if legend is not None:
                anchor = legend.get_bbox_to_anchor().transformed(ax.transAxes.inverted())
                assert anchor.x0 >= 1.0 or anchor.y0 <= 0.0, kind


def test_class_make_up_figure_names_the_classes(synth, tmp_path, drawn):
    from tidal.report import summarize
    from tidal.report.figures import plot_classes

    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    records = [synth.make_record(m, seed, c) for m in synth.METHODS for seed in synth.SEEDS for c in range(4)]
    (s,) = summarize(records, class_names={"fashion-mnist": names})
    plot_classes(s, tmp_path / "x-classes.png")
    left, right = drawn["classes"].axes[:2]
    assert [t.get_text() for t in right.get_xticklabels()] == names
    assert [t.get_text() for t in left.get_yticklabels()] == s.methods
    texts = [t.get_text() for t in left.texts]  # tidal-entropy picks 35, 36, 37 of 50 tail samples: 36 [33, 38]
    assert "36\n[34, 38]" in texts or "36\n[33, 38]" in texts


@pytest.mark.parametrize("methods", [("random", "tidal-entropy"), ("random", "tidal-entropy", "entropy")])
def test_titles_and_axis_labels_fit_the_figure_with_few_methods(synth, monkeypatch, tmp_path, methods):
    """With 2-3 methods the figure is narrow: the long title and the shared y label are wrapped,
    not clipped at the figure's edge (issue 21, case 28)."""
    import tidal.report.figures as figures
    from tidal.report import summarize
    from tidal.report.style import save_figure

    saved = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: saved.append(fig) or save_figure(fig, path))
    s = summarize([synth.make_record(m, seed, c) for m in methods for seed in synth.SEEDS for c in range(4)])[0]
    figures.plot_relative(s, tmp_path / "relative.png")
    assert figures.plot_ablation(s, tmp_path / "ablation.png") is not None or len(methods) == 2
    for fig in saved:
        renderer = fig.canvas.get_renderer()
        texts = [t for t in (fig._suptitle, fig._supxlabel, fig._supylabel) if t is not None]
        texts += [t for ax in fig.axes if ax.get_visible() for t in (ax.title, ax.xaxis.label, ax.yaxis.label)]
        for t in texts:
            if t.get_text():
                box = t.get_window_extent(renderer)
                assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= fig.bbox.x1 + 1 and box.y1 <= fig.bbox.y1 + 1, \
                    (t.get_text(), box.extents, fig.bbox.extents)
