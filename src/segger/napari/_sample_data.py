"""npe2 sample data: two real Xenium crops shipped in ``segger.sample_data``.

Both are 10x Genomics public Xenium data (CC BY 4.0, attribute "10x Genomics"); the full origin
of each crop is in its ``ATTRIBUTION.md``, which is copied into every layer's metadata.
"""

from __future__ import annotations

from contextlib import ExitStack
from importlib import resources

SAMPLES = {
    "xenium_lung": {
        "prefix": "lung",
        "attribution": (
            "10x Genomics Xenium preview, non-diseased human lung (CC BY 4.0, attribute "
            "'10x Genomics'); 15k-transcript crop from dpeerlab/segger_dev test data (MIT)"
        ),
    },
    "xenium_breast": {
        "prefix": "breast",
        "attribution": (
            "10x Genomics Xenium FFPE Human Breast Cancer, In Situ Replicate 1 (Janesick et al. "
            "2023; CC BY 4.0, attribute '10x Genomics'); crop from LazDaria/SegTraQ test data (MIT)"
        ),
        # DAPI image placement (from ATTRIBUTION.md): col = x/0.2125 − 7153, row = y/0.2125 − 12942
        "image": ("morphology_focus.tif", 0.2125, (12942 * 0.2125, 7153 * 0.2125)),
    },
}


def _load(key: str) -> list[tuple]:
    from segger.io import read_sample
    from segger.napari._reader import sample_to_layers

    spec = SAMPLES[key]
    root = resources.files("segger.sample_data") / key
    with ExitStack() as stack:
        folder = stack.enter_context(resources.as_file(root))
        attribution_md = (folder / "ATTRIBUTION.md").read_text(encoding="utf-8")
        meta = {
            "attribution": spec["attribution"],
            "attribution_md": attribution_md,
            "sample": key,
        }
        sample = read_sample(folder)
        layers = sample_to_layers(sample, prefix=spec["prefix"], metadata=meta)
        if "image" in spec:
            fname, pixel, translate = spec["image"]
            img_path = folder / fname
            if img_path.exists():
                import tifffile

                image = tifffile.imread(img_path)
                layers.insert(
                    0,
                    (
                        image,
                        dict(
                            name=f"{spec['prefix']} DAPI",
                            scale=(pixel, pixel),
                            translate=translate,
                            colormap="gray",
                            blending="additive",
                            units=("micrometer", "micrometer"),
                            metadata={"segger": {"kind": "image", **meta}},
                        ),
                        "image",
                    ),
                )
    return layers


def xenium_lung() -> list[tuple]:
    """Xenium lung crop: 15k transcripts and 221 nucleus polygons (10x Genomics, CC BY 4.0)."""
    return _load("xenium_lung")


def xenium_breast() -> list[tuple]:
    """Xenium breast-cancer crop: 24k transcripts, 132 nucleus polygons and the DAPI image."""
    return _load("xenium_breast")
