"""Per-tensor values of a heatmap, for drawing it over another grid (the plan editor's)."""

from __future__ import annotations

from .heatmap import Heatmap


def tensor_values(hm: Heatmap) -> dict[str, float]:
    """Every present cell's value by tensor name, the outside-layer tensors included."""
    out: dict[str, float] = {}
    for i, layer in enumerate(hm.layers):
        for j, kind in enumerate(hm.kinds):
            if hm.present[i, j]:
                out[hm.tensor_name(layer, kind)] = float(hm.values[i, j])
    out.update(hm.extra)
    return out
