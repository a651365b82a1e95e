"""The app's one stylesheet. Panel renders each pane in a shadow root of its own, so a
rule reaches a pane only through that pane's `stylesheets`: `html` gives every pane it."""

from __future__ import annotations

from typing import Any

import panel as pn

CSS = """
:host, body { font-family: system-ui, sans-serif; }
table.triage, table.labs, table.consent, table.evidence { border-collapse: collapse; }
table.triage td, table.triage th, table.labs td, table.labs th, table.consent td,
table.consent th, table.evidence td, table.evidence th
  { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
ul.flags { margin: 0; padding-left: 1em; }
li.flag-personal b { color: #8a4b00; }
li.flag-generic b { color: #a00; }
.withheld { color: #8a4b00; }
tr.consent-withheld td { background: #fff4e5; }
tr.lab-high td, tr.lab-low td { background: #fde8e8; }
.alert-card { border-left: 4px solid #a00; padding: 4px 8px; margin: 6px 0; background: #fafafa; }
.alert-acknowledged, .alert-dismissed { border-left-color: #999; opacity: 0.8; }
.unavailable, .refused { color: #a00; }
"""


def html(text: str, **kw: Any) -> Any:
    """An HTML pane with the app's stylesheet."""
    return pn.pane.HTML(text, stylesheets=[CSS], **kw)  # type: ignore[no-untyped-call]
