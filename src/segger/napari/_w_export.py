"""*Export* dock widget: the current result into an output folder like ``segger segment``'s
(:func:`segger.workflows.iter_export_result`: same file names, same writers, a run JSON), in a worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QCheckBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget

from segger.errors import SeggerInputError
from segger.napari._common import SeggerWidget, add_row
from segger.utils.outdir import BOUNDARIES_FILE, CELLS_FILE, QC_FILE, TRANSCRIPTS_FILE

#: the files of ``segger segment``'s output folder (:mod:`segger.utils.outdir`), plus the model
FILES = {
    "transcripts": (TRANSCRIPTS_FILE, "Transcripts with segger_cell_id, score, assignment (parquet)"),
    "boundaries": (BOUNDARIES_FILE, "Cell outlines (GeoParquet-style polygons, µm)"),
    "anndata": (CELLS_FILE, "Cells × genes counts with centroids, areas, mean score (AnnData)"),
    "qc": (QC_FILE, "QC metrics (fraction assigned, transcripts per cell, MECR, agreement)"),
    "model": ("model/last.pt", "Model checkpoint of the last training run (safe format)"),
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
        spec = self.guarded(self._run_record)
        if spec is None:
            return
        keep = [FILES[k][0] for k in chosen if k != "model"]
        save_model = run.save_checkpoint if "model" in chosen and run is not None else None

        def job():
            from segger.workflows import iter_export_result

            files = yield from iter_export_result(result, out, keep=keep, save_model=save_model,
                                                  command="napari Export", **spec)
            return [str(p) for p in files.values()]

        def done(written):
            self.last_written = written
            self.written.setText("Wrote:<br>" + "<br>".join(written))
            self.panel.status.setText(f"Export: {len(written)} file(s) in {out}")

        self.job.start(job, desc="Export", on_done=done)

    def _run_record(self) -> dict:
        """``inputs``, ``parameters`` and ``extra`` of the run JSON, from the session (what built the
        graph, the model and the result), in the keys ``segger segment`` writes."""
        st = self.state
        sample = st.spatial_sample
        inputs = [p for p in (getattr(sample, "transcripts_path", None) or getattr(sample, "source", None),
                              getattr(sample, "nuclei_path", None)) if p]
        if not inputs and (st.data_source or {}).get("path"):
            inputs = [st.data_source["path"]]
        bundle = st.bundle
        cfg = st.model_info.get("config") if st.model_info else None
        parameters = {
            "platform": getattr(sample, "platform", None),
            "nuclei_source": getattr(sample, "nuclei_source", None),
            "graph": bundle.params.to_dict() if bundle is not None else None,
            "train": cfg, "predict": dict(st.result_params or {}),
            "checkpoint": st.model_info.get("checkpoint") if st.model_info else None,
            "seed": (cfg or {}).get("seed") if isinstance(cfg, dict) else None,
        }
        extra = {"graph_summary": bundle.summary() if bundle is not None else None,
                 "graph_source": {k: v for k, v in st.bundle_source.items() if k != "params"},
                 "model": st.model_label(), "warnings": list(getattr(sample, "warnings", []) or []),
                 "n_corrections": len(st.corrections) if st.corrections is not None else 0}
        if sample is not None and getattr(sample, "filter_report", None) is not None:
            extra["filter_report"] = sample.filter_report.to_dict()
        return {"inputs": inputs, "parameters": parameters, "extra": extra, "sample": sample,
                "pixel_size": getattr(sample, "pixel_size", None)}

    @staticmethod
    def _raise(exc):
        raise exc
