"""CLI progress: a bar on a terminal, one line per stage/epoch in a log file."""

from __future__ import annotations

import io

from segger.cli.main import _Bar
from segger.progress import Progress


def _events(epochs=3, steps=40):
    yield Progress("read", 0, 1, "reading x")
    yield Progress("read", 1, 1, "12,000 transcripts")
    yield Progress("train", 0, None, "preparing tiles")
    for e in range(epochs):
        for s in range(steps):
            yield Progress("train", e * steps + s, epochs * steps, f"epoch {e + 1}", {"loss": 0.5, "epoch": float(e)})
        yield Progress("train", (e + 1) * steps, epochs * steps, f"epoch {e + 1} done", {"loss": 0.4, "val_auroc": 0.9})
    for s in range(50):
        yield Progress("predict", s, 50, "scoring")


def test_log_gets_one_line_per_stage_and_epoch():
    out = io.StringIO()  # not a TTY
    bar = _Bar(False, stream=out)
    for ev in _events():
        bar(ev)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 2 + 1 + 3 + 1, lines
    assert [ln for ln in lines if "done" in ln][0].startswith("train [40/120]: epoch 1 done loss 0.400 val_auroc 0.900")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_terminal_bar_label_follows_the_epoch():
    out = _Terminal()
    bar = _Bar(False, stream=out)
    for ev in _events(epochs=2, steps=5):
        bar(ev)
        if ev.stage == "train" and ev.message == "epoch 2":
            assert "train: epoch 2" in bar.bar.desc
    bar.close()
    assert "preparing tiles" not in out.getvalue().rsplit("\r", 1)[-1]


def test_quiet_prints_nothing():
    out = io.StringIO()
    bar = _Bar(True, stream=out)
    for ev in _events(epochs=1, steps=2):
        bar(ev)
    assert out.getvalue() == ""
