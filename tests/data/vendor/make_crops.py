"""Regenerate (or check) the real vendor subsets in tests/data/vendor from the upstream files.

    python tests/data/vendor/make_crops.py merscope PATH/TO/vizgen-postprocessing/tests/vpt/data/detected_transcripts.csv
    python tests/data/vendor/make_crops.py cosmx PATH/TO/GiottoData/inst/Mini_datasets/CosMx/Raw/Lung12_tx_file.csv
    add --check to compare with the files here instead of writing them

Lines are kept byte for byte (read and written as bytes): no parsing, no re-formatting. See the
SOURCE.md in each folder for the origin, the licence and the selection rules implemented here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

MERSCOPE_ROWS = 109  # header + the first 109 data lines
COSMX_HEAD_ROWS = 60
COSMX_RUN_START = b"2,2245,5789.53774444444,-157007.533313333,"
COSMX_RUN_ROWS = 30
COSMX_FULL_CELLS = {(b"3", b"306"), (b"3", b"312"), (b"3", b"1686")}


def merscope(lines: list[bytes]) -> list[bytes]:
    return lines[: 1 + MERSCOPE_ROWS]


def cosmx(lines: list[bytes]) -> list[bytes]:
    header, data = lines[0], lines[1:]
    keep = set(range(COSMX_HEAD_ROWS))
    start = next(i for i, line in enumerate(data) if line.startswith(COSMX_RUN_START))
    keep.update(range(start, start + COSMX_RUN_ROWS))
    for i, line in enumerate(data):
        fov, cell = line.split(b",", 2)[:2]
        if (fov, cell) in COSMX_FULL_CELLS:
            keep.add(i)
    return [header] + [data[i] for i in sorted(keep)]


TARGETS = {"merscope": (merscope, HERE / "merscope" / "detected_transcripts.csv"),
           "cosmx": (cosmx, HERE / "cosmx" / "Lung12_tx_file.csv")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("platform", choices=sorted(TARGETS))
    ap.add_argument("source", type=Path, help="the upstream file (see SOURCE.md)")
    ap.add_argument("--check", action="store_true", help="compare with the shipped copy; write nothing")
    args = ap.parse_args(argv)
    select, out = TARGETS[args.platform]
    lines = args.source.read_bytes().splitlines(keepends=True)
    crop = b"".join(select(lines))
    if args.check:
        same = out.read_bytes() == crop
        print(f"{out}: {'identical to' if same else 'DIFFERS from'} the selection of {args.source}")
        return 0 if same else 1
    out.write_bytes(crop)
    n_data = crop.count(b"\n") - 1
    print(f"wrote {out} ({n_data} data lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
