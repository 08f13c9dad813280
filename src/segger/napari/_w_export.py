"""*Export* dock widget: the core's atomic writers for the current result, in a worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QCheckBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget

from segger.errors import SeggerInputError
from segger.napari._common import SeggerWidget, add_row
from segger.progress import Progress

FILES = {
    "transcripts": ("segger_transcripts.parquet", "Transcripts with segger_cell_id, score, assignment (parquet)"),
    "boundaries": ("segger_cell_boundaries.parquet", "Cell outlines (GeoParquet-style polygons, µm)"),
    "anndata": ("segger_cells.h5ad", "Cells × genes counts with centroids, areas, mean score (AnnData)"),
    "qc": ("segger_qc.json", "QC metrics (fraction assigned, transcripts per cell, MECR, agreement)"),
    "model": ("segger_model.pt", "Model checkpoint of the last training run (safe format)"),
}


class ExportWidget(SeggerWidget):
    """Write the current result with the core's exporters (atomic files)."""

    cancellable = False

    def __init__(self, napari_viewer: Any, parent=None) -> None:
        super().__init__(napari_viewer, parent)
        form = self.group("Output")
        row = QWidget()
        hl = QHBoxLayout(row)
        hl.setContentsMargins(0, 0, 0, 0)
        self.folder = QLineEdit(str(Path.cwd() / "segger_output"))
        self.browse_button = QPushButton("…")
        hl.addWidget(self.folder, 1)
        hl.addWidget(self.browse_button)
        add_row(form, "Folder", row, "Folder to write into (created if missing; files are replaced atomically)")
        self.checks: dict[str, QCheckBox] = {}
        for key, (name, tip) in FILES.items():
            cb = QCheckBox(name)
            cb.setChecked(key != "model")
            cb.setToolTip(tip)
            form.addRow(cb)
            self.checks[key] = cb
        self.export_button = QPushButton("Export")
        self.body.addWidget(self.export_button)
        self.written = QLabel("Run Predict first; then export.")
        self.written.setWordWrap(True)
        self.body.addWidget(self.written)
        hint = QLabel("Tip: File ▸ Save Selected Layer on 'segger transcripts' also writes "
                      ".parquet (assignments) or .h5ad (AnnData).")
        hint.setWordWrap(True)
        self.body.addWidget(hint)
        self.body.addStretch(1)
        self.browse_button.clicked.connect(self._browse)
        self.export_button.clicked.connect(self.export)
        self.state.result_changed.connect(self.refresh_enabled)
        self.state.model_changed.connect(self.refresh_enabled)
        self.set_controls(self.export_button, self.folder, self.browse_button)
        self.refresh_enabled()

    def refresh_enabled(self) -> None:
        if self.busy:
            return
        self.export_button.setEnabled(self.state.result is not None)
        if self.state.result is None:
            self.written.setText("Run Predict first; then export.")
        elif self.written.text().startswith("Run Predict first"):
            self.written.setText("Ready: choose a folder and press Export.")
        self.checks["model"].setEnabled(self.state.run is not None)
        if self.state.run is None:
            self.checks["model"].setChecked(False)

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Export folder", self.folder.text())
        if path:
            self.folder.setText(path)

    def export(self, folder: str | Path | None = None) -> None:
        """Write the chosen files into ``folder`` (default: the folder field) in the background."""
        result = self.state.result
        if result is None:
            self.guarded(self._raise, SeggerInputError("no result yet; run Predict first"))
            return
        out = Path(folder or self.folder.text().strip() or "segger_output")
        if folder:
            self.folder.setText(str(out))
        chosen = [k for k, cb in self.checks.items() if cb.isChecked() and cb.isEnabled()]
        if not chosen:
            self.guarded(self._raise, SeggerInputError("nothing to export; tick at least one file"))
            return
        run = self.state.run
        params = dict(self.state.result_params)

        def job():
            from segger.export import writers as W

            total = len(chosen) + 1
            written: list[str] = []
            out.mkdir(parents=True, exist_ok=True)
            boundaries = None
            if "boundaries" in chosen or "anndata" in chosen:
                yield Progress("export", 0, total, "cell outlines")
                boundaries = W.cell_boundaries(result)
            for i, key in enumerate(chosen, start=1):
                path = out / FILES[key][0]
                yield Progress("export", i, total, f"writing {path.name}")
                if key == "transcripts":
                    W.write_transcripts(result, path)
                elif key == "boundaries":
                    W.write_boundaries(boundaries, path)
                elif key == "anndata":
                    W.write_anndata(W.build_anndata(result, boundaries), path)
                elif key == "qc":
                    from segger.validation import qc_report, write_qc_json

                    report = qc_report(result)
                    report["score_cut"] = params.get("score_cut")
                    write_qc_json(report, path)
                elif key == "model":
                    run.save_checkpoint(path)
                written.append(str(path))
            yield Progress("export", total, total, "done")
            return written

        def done(written):
            self.last_written = written
            self.written.setText("Wrote:<br>" + "<br>".join(written))
            self.panel.status.setText(f"Export: {len(written)} file(s) in {out}")

        self.job.start(job, desc="Export", on_done=done)

    @staticmethod
    def _raise(exc):
        raise exc
