"""Pure conversions between Segger's core tables and napari layer data (no viewer, no Qt).

Coordinates: every layer made here has its data in micrometres (world unit = µm, ``scale`` 1,
``units`` micrometer), in napari's (y, x) order. The functions that turn layers back into core
tables honour the layer's ``scale`` and ``translate`` (e.g. a Labels layer from Cellpose run on a
DAPI image with a 0.2125 µm pixel size), so world coordinates are taken to be micrometres.

Colours are computed here as one float32 RGBA array (never through napari's feature colour
mapping, which is 10–35x slower at a million points), with stable hash colours per gene / per
cell id so that a cell keeps its colour across re-runs and re-thresholds.

Every function returns a napari ``LayerDataTuple`` ``(data, kwargs, layer_type)`` or a core table.

One module per layer kind: :mod:`._base` (names, units, colours, world coordinates),
:mod:`.points` (transcripts), :mod:`.shapes` (polygons, nuclei), :mod:`.results` (result points,
cell outlines), :mod:`.vectors` (edges, attention), :mod:`.corrections` (the Correct step's layers);
every name stays importable from ``segger.napari.layers``.
"""

from segger.corrections.edits import (  # noqa: F401 - the edit rules live in the core; re-exported
    assignment_kinds,
    changed_transcripts,
    split_by_line,
    split_by_seeds,
)
from segger.napari.layers._base import (  # noqa: F401
    LAYER_ATTENTION,
    LAYER_CELLS,
    LAYER_HIGHLIGHT,
    LAYER_NUCLEI,
    LAYER_TRANSCRIPTS,
    LAYER_TX_EDGES,
    MAX_SHAPES,
    METADATA_KEY,
    POINT_SIZE_UM,
    RASTER_PIXEL_UM,
    RESULT_LAYER_NAMES,
    UNASSIGNED_RGBA,
    UNITS,
    _hsv_to_rgb,
    _layer_name,
    _world_yx,
    colors_by_key,
    hash_colors,
    layer_scale_translate,
)
from segger.napari.layers.points import (  # noqa: F401
    _TX_FEATURES,
    points_to_transcripts,
    transcripts_features,
    transcripts_to_points,
)
from segger.napari.layers.shapes import (  # noqa: F401
    _call_nuclei_from_labels,
    _largest_polygon,
    _nuclei_table,
    fast_triangulation,
    label_image_to_nuclei,
    labels_to_nuclei,
    nuclei_to_layer,
    polygons_to_yx,
    rasterize_polygons,
    shapes_to_nuclei,
)
from segger.napari.layers.results import (  # noqa: F401
    OUTLINE_PALETTE,
    assignment_feature,
    cell_colors_and_ids,
    cell_palette,
    outline_index,
    cells_to_layer,
    result_colors,
    result_features,
    result_from_points,
    result_to_points,
)
from segger.napari.layers.vectors import (  # noqa: F401
    _node_yx,
    attention_to_vectors,
    edges_to_vectors,
    graph_edges_to_vectors,
)
from segger.napari.layers.corrections import (  # noqa: F401
    CHANGED_RGBA,
    CORRECTED_RGBA,
    LAYER_CHANGES,
    LAYER_CORRECTIONS,
    LAYER_SELECTED,
    LAYER_SELECTION,
    PointIndex,
    SELECTED_RGBA,
    marker_points,
    points_in_polygons,
    result_layer_update,
    shapes_to_world_polygons,
    update_result_rows,
)
