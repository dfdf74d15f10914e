"""The label CSV: one row per scan, blank cells are unknown and left out of the loss.

Layout (header names are case-insensitive; other columns are ignored):

- ``file`` or ``path``: the image file, absolute or relative to the CSV's folder (any format
  the worker reads). Required.
- ``subject_id`` (also ``subject``, ``patient_id``, ``patient``): who was scanned; folds never
  split a subject. Blank: the file path is used as the subject.
- ``quality`` (also ``overall_quality``, ``score``): overall quality 0-10; blank = unknown.
  A MIQA review export with only a ``decision`` column gives unknown quality.
- one column per indicator, named exactly by ``miqa_worker.constants.ARTIFACT_KEYS``
  (normal_variant, lesion, incomplete_coverage, misalignment, wraparound, ghosting_motion,
  inhomogeneity, susceptibility_metal, flow_artifact, truncation): ``true``/``false``
  (also 1/0, yes/no, t/f, y/n); blank = unknown. A missing column is unknown for every row.
- ``accepted_suggestions`` (a MIQA export's): the artifact keys, separated by spaces, that the
  reviewer only accepted from the model's suggestions; they are unknown, never labels.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..constants import ARTIFACT_KEYS, QUALITY_MAX, QUALITY_MIN

FILE_COLUMNS = ('file', 'path')
SUBJECT_COLUMNS = ('subject_id', 'subject', 'patient_id', 'patient')
QUALITY_COLUMNS = ('quality', 'overall_quality', 'score')
ACCEPTED_COLUMN = 'accepted_suggestions'
TRUE = {'true', '1', 'yes', 't', 'y', '1.0'}
FALSE = {'false', '0', 'no', 'f', 'n', '0.0'}


@dataclass
class LabelRow:
    """One scan's labels: quality NaN and indicator NaN mean unknown."""

    file: str
    subject_id: str
    quality: float
    indicators: np.ndarray  # float32 [10]: 1, 0 or NaN
    extra: dict = field(default_factory=dict)

    @property
    def quality_known(self) -> bool:
        return not math.isnan(self.quality)

    @property
    def indicator_mask(self) -> np.ndarray:
        return ~np.isnan(self.indicators)


def parse_bool(value: object) -> float:
    """``true``/``false`` (and synonyms) to 1.0/0.0; blank or None to NaN."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return math.nan
    if isinstance(value, bool):
        return float(value)
    text = str(value).strip().lower()
    if text in ('', 'nan', 'none', 'null', 'unknown', '?'):
        return math.nan
    if text in TRUE:
        return 1.0
    if text in FALSE:
        return 0.0
    raise ValueError(f'not a boolean label: {value!r}')


def parse_quality(value: object) -> float:
    """A 0-10 score; blank to NaN; outside 0-10 is an error."""
    if value is None:
        return math.nan
    text = str(value).strip()
    if text in ('', 'nan', 'None'):
        return math.nan
    quality = float(text)
    if not QUALITY_MIN <= quality <= QUALITY_MAX:
        raise ValueError(f'quality {quality} outside {QUALITY_MIN}-{QUALITY_MAX}')
    return quality


def _column(header: dict[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        if name in header:
            return header[name]
    return None


def read_label_csv(path: Path | str) -> list[LabelRow]:
    """Parse a label CSV (layout in the module docstring); relative files resolve to its folder."""
    path = Path(path)
    with path.open(newline='', encoding='utf-8-sig') as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            raise ValueError(f'{path}: empty CSV')
        header = {name.strip().lower(): name for name in reader.fieldnames}
        file_col = _column(header, FILE_COLUMNS)
        if file_col is None:
            raise ValueError(f'{path}: needs a "file" or "path" column')
        subject_col = _column(header, SUBJECT_COLUMNS)
        quality_col = _column(header, QUALITY_COLUMNS)
        known = {file_col, subject_col, quality_col}
        rows = []
        for number, raw in enumerate(reader, start=2):
            file = (raw.get(file_col) or '').strip()
            if not file:
                raise ValueError(f'{path}:{number}: empty file')
            if not Path(file).is_absolute():
                file = str((path.parent / file).resolve())
            subject = (raw.get(subject_col) or '').strip() if subject_col else ''
            try:
                quality = parse_quality(raw.get(quality_col)) if quality_col else math.nan
                accepted = set((raw.get(header[ACCEPTED_COLUMN]) or '').split()
                               if ACCEPTED_COLUMN in header else ())
                indicators = np.array(
                    [parse_bool(raw.get(header[k])) if k in header and k not in accepted
                     else math.nan for k in ARTIFACT_KEYS], dtype=np.float32)
            except ValueError as exc:
                raise ValueError(f'{path}:{number}: {exc}') from exc
            extra = {k: v for k, v in raw.items()
                     if k not in known and k.strip().lower() not in ARTIFACT_KEYS}
            rows.append(LabelRow(file, subject or file, quality, indicators, extra))
    return rows


def _cell(value: object) -> str:
    if value is None or isinstance(value, float) and math.isnan(value):
        return ''
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float):
        return f'{value:.4g}'
    return str(value)


def write_index(rows: list[dict], path: Path) -> None:
    """Write dict rows as a label CSV (booleans as true/false, None as blank)."""
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open('w', newline='', encoding='utf-8') as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in columns})
