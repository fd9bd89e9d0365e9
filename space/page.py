"""What the page shows as HTML: the findings as a bar chart with their calls, the operating point, the tag table.

Every string that comes from a model config, a ``thresholds.json`` or an uploaded file is HTML-escaped.
The chart is plain HTML and CSS, so its numbers are text a screen reader, a browser test or a copy-paste can read:
one row per finding (``<tr data-finding="...">``), sorted by probability, highest first, with the probability to four
decimals and, when the model has an operating point, ``positive`` or ``negative`` and the threshold.
"""

from __future__ import annotations

from html import escape
from typing import Mapping, Optional

from findings import THRESHOLDS_FILE, OperatingPoint

DISCLAIMER = (
    "**For research only.** This model is not a medical device and must not be used to diagnose, triage or treat "
    "anyone. Its scores are one model's output on one image, not a reading of the X-ray."
)

CSS = """
#findings table { width: 100%; table-layout: fixed; border-collapse: collapse; font-variant-numeric: tabular-nums; }
#findings th, #findings td { padding: 2px 6px; vertical-align: middle; border: none; white-space: nowrap; }
#findings th { text-align: left; border-bottom: 1px solid #d0d4da; }
#findings th:nth-child(1) { width: 26%; }
#findings th:nth-child(3) { width: 19%; }
#findings th:nth-child(4) { width: 13%; }
#findings th:nth-child(5) { width: 17%; }
#findings td.finding { overflow: hidden; text-overflow: ellipsis; }
#findings .track { background: #eef0f3; height: 14px; border-radius: 3px; }
#findings .fill { background: #6b7b93; height: 14px; border-radius: 3px; }
#findings tr.positive .fill { background: #c2410c; }
#findings tr.positive .call { color: #c2410c; font-weight: 600; }
#findings .probability, #findings .threshold, #findings th:nth-child(3), #findings th:nth-child(5) { text-align: right; }
#tags table { border-collapse: collapse; }
#tags th, #tags td { padding: 2px 8px; text-align: left; border: none; }
"""
"""Styles for the chart and the tag table (the Blocks' ``css``)."""


def findings_chart(probabilities: Mapping[str, float], operating_point: Optional[OperatingPoint]) -> str:
    """The bar chart as an HTML table, highest probability first (ties keep the model's label order).

    Args:
        probabilities: label name → probability in [0, 1], in the model's label order.
        operating_point: the model's thresholds, or None to show probabilities only. A label without a threshold
            gets "no call".
    """
    ranked = sorted(probabilities.items(), key=lambda item: -item[1])  # sorted() is stable: ties stay in label order
    header = "<th>Finding</th><th></th><th>Probability</th>"
    if operating_point is not None:
        header += "<th>Call</th><th>Threshold</th>"
    rows = []
    for label, probability in ranked:
        cells = (
            f'<td class="finding">{escape(label)}</td>'
            f'<td class="bar"><div class="track"><div class="fill" style="width: {100 * probability:.1f}%"></div></div></td>'
            f'<td class="probability">{probability:.4f}</td>'
        )
        row_class = ""
        if operating_point is not None:
            positive = operating_point.is_positive(label, probability)
            if positive is None:  # thresholds.json has none for this label
                cells += '<td class="call">no call</td><td class="threshold">none</td>'
            else:
                row_class = "positive" if positive else "negative"
                cells += (
                    f'<td class="call">{row_class}</td>'
                    f'<td class="threshold">{"≥" if positive else "<"} {operating_point.thresholds[label]:.4f}</td>'
                )
        rows.append(f'<tr class="{row_class}" data-finding="{escape(label, quote=True)}">{cells}</tr>')
    return f'<table><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def operating_point_text(operating_point: Optional[OperatingPoint]) -> str:
    """Markdown under the chart: the rule behind the calls, or that the model has no operating point."""
    if operating_point is None:
        return (
            f"This model has no `{THRESHOLDS_FILE}`, so the page shows probabilities only, with no positive or "
            "negative call."
        )
    return (
        "A finding is called **positive** when its probability is at least its threshold. "
        + escape(operating_point.describe())
    )


def tag_table(tags: Mapping[str, str]) -> str:
    """The DICOM tags shown for an upload as an HTML table; empty for a PNG or JPEG."""
    if not tags:
        return ""
    rows = "".join(f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>" for name, value in tags.items())
    return f"<table><tbody>{rows}</tbody></table>"
