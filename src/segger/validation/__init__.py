"""QC metrics: fraction assigned, transcripts per cell, agreement with a reference, MECR."""

from segger.validation.metrics import (
    UNASSIGNED_VALUES,
    agreement,
    agreement_per_cell,
    factorize_cells,
    find_exclusive_gene_pairs,
    format_qc_table,
    fraction_assigned,
    mecr,
    mecr_flagged_cells,
    mecr_per_pair,
    qc_report,
    qc_rows,
    transcripts_per_cell,
    unassigned_mask,
    write_qc_json,
)

__all__ = [
    "UNASSIGNED_VALUES",
    "agreement",
    "agreement_per_cell",
    "factorize_cells",
    "find_exclusive_gene_pairs",
    "format_qc_table",
    "fraction_assigned",
    "mecr",
    "mecr_flagged_cells",
    "mecr_per_pair",
    "qc_report",
    "qc_rows",
    "transcripts_per_cell",
    "unassigned_mask",
    "write_qc_json",
]
