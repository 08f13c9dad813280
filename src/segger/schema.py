"""Column names and table contracts shared by every part of the core.

Transcripts table (``pandas.DataFrame``, one row per molecule, coordinates in µm):

=================  =========  ==========================================================
column             dtype      meaning
=================  =========  ==========================================================
``transcript_id``  int64      unique molecule id (vendor id, or the row number when absent)
``x``, ``y``       float64    position in µm
``z``              float64    position in µm (0.0 where the platform has none)
``gene``           object     gene / feature name
``qv``             float64    Phred quality (NaN where the platform reports none)
``nuclear``        bool       the vendor places the molecule in a nucleus
``cell_id``        object     vendor cell id as a string, ``None`` when unassigned
``compartment``    object     optional vendor compartment (CosMx ``CellComp``)
=================  =========  ==========================================================

Any other input columns are kept unchanged after these.

Nuclei / boundaries table (``pandas.DataFrame``, one row per nucleus):

=============  ========  ==========================================================
``bd_id``      object    unique id (string); the vendor cell id when derived from one
``geometry``   object    ``shapely.Polygon`` (valid, µm)
``x``, ``y``   float64   centroid
``source``     object    ``polygon`` | ``labels`` | ``approximated``
=============  ========  ==========================================================

Result table = transcripts table + ``segger_cell_id`` (str, ``UNASSIGNED`` when none),
``score`` (float32, 0 when no candidate), ``assignment`` (nucleus|cytoplasm|fragment|none).

Graph node and edge types (``HeteroData`` keys; built by :func:`segger.data.build_graph`):
``TX_TX`` and ``TX_BD`` carry the model's messages (:data:`MESSAGE_EDGES`), ``TX_CAND`` holds the
candidate links that prediction scores.
"""

TX_ID = "transcript_id"
X, Y, Z = "x", "y", "z"
GENE = "gene"
QV = "qv"
NUCLEAR = "nuclear"
CELL_ID = "cell_id"
COMPARTMENT = "compartment"
TX_COLUMNS = [TX_ID, X, Y, Z, GENE, QV, NUCLEAR, CELL_ID]

BD_ID = "bd_id"
GEOMETRY = "geometry"
BD_SOURCE = "source"
BD_COLUMNS = [BD_ID, GEOMETRY, X, Y, BD_SOURCE]

SEGGER_CELL_ID = "segger_cell_id"
SCORE = "score"
ASSIGNMENT = "assignment"
UNASSIGNED = "UNASSIGNED"
ASSIGNMENT_KINDS = ("nucleus", "cytoplasm", "fragment", "none")

TX_NODE, BD_NODE = "tx", "bd"
TX_TX = (TX_NODE, "neighbors", TX_NODE)
TX_BD = (TX_NODE, "belongs", BD_NODE)
TX_CAND = (TX_NODE, "candidate", BD_NODE)
#: the edge types the GNN passes messages along (the candidates are scored, not passed)
MESSAGE_EDGES = (TX_BD, TX_TX)
