"""What the report's optional sections (``colormap``, ``label_table``) share: the entry for
a section that was not run, failed, or ran."""

from __future__ import annotations

from collections.abc import Callable


def section_entry(base: dict, reason: str | None, out_of_time: bool,
                  measure: Callable[[], dict]) -> dict:
    """``base`` plus ``status``/``reason`` and what ``measure()`` returns.

    Not run when ``reason`` says why or the time budget is spent; "failed" with the
    exception's first line when ``measure`` raises: a failing section must not cost the rest
    of the report.
    """
    if reason is None and out_of_time:
        reason = "time budget used up (--max-seconds)"
    if reason is not None:
        return {**base, "status": "not run", "reason": reason, "rows": []}
    try:
        measured = measure()
    except Exception as exc:  # noqa: BLE001 - reported in the section instead
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        return {**base, "status": "failed", "reason": f"{type(exc).__name__}: {first_line}",
                "rows": []}
    return {**base, "status": "ok", "reason": "", **measured}
