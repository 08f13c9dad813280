"""napari plugin of Segger (npe2): reader, writers, sample data and dock widgets.

Importing this package imports neither Qt nor torch; the widgets live in
:mod:`segger.napari._widgets` and the pure layer conversions in :mod:`segger.napari.layers`.

Dock widgets (Plugins ▸ Segger): "Data & graph", "Train / fine-tune", "Predict", "QC", "Export".
Result layers (stable names, updated in place on re-run): "segger transcripts", "segger cells",
"segger attention" (and "segger tx-tx edges" when asked for).
"""

PLUGIN_NAME = "napari-segger"
PANEL = "Segger"
"""The single dock with every step as a tab (the recommended entry point)."""
WIDGETS = ("Data & graph", "Train / fine-tune", "Predict", "QC", "Export")
