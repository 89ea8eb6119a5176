"""Training report figures: every summary panel holds something, k-space axes are in cycles/FOV."""

import numpy as np

from mrzero.sequences.training.report import Snapshot, _summary_figure


def _snapshot(iteration: int) -> Snapshot:
    k = np.stack(np.meshgrid(np.arange(-4, 4), np.arange(-4, 4)), -1).reshape(-1, 2).astype(float)
    image = np.linspace(0, 1, 64).reshape(8, 8)
    return Snapshot(iteration, k, np.repeat(np.arange(8), 8), np.full(8, 5.0), image, image[::-1])


def test_summary_has_no_empty_panel_and_labels_kspace():
    history = [
        {"iteration": i, "loss": 1 / (i + 1), "error": 0.5 / (i + 1), "sar_rel": 1.0} for i in range(5)
    ]
    figure = _summary_figure([_snapshot(0), _snapshot(4)], history, [], "run")
    axes = [ax for sub in figure.subfigs for ax in sub.axes if ax.get_label() != "<colorbar>"]
    assert len(axes) == 3 * 2 + 4
    for ax in axes:
        assert ax.images or ax.lines or ax.collections, ax.get_title()
    kspace = [ax for ax in axes if ax.get_title().startswith("k-space")]
    assert len(kspace) == 2 and all(ax.get_xlabel() == "kx [cycles/FOV]" for ax in kspace)
