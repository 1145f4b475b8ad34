"""Where a chromium page's main-thread time goes, from a trace (Playwright's browser tracing).

    summary = main_thread(trace_bytes, seconds)   # {name: (ms of self time, events) per second}

The renderer's main thread is the thread named CrRendererMain; a task is a top-level
event on it (ThreadControllerImpl::RunTask and the like). Each event's *self* time (its
duration less that of the events nested in it) is summed by name, so the parts add up to
the tasks' total: "Paint", "Layout", "UpdateLayoutTree" (style), "FunctionCall" (script),
"PrePaint", "Layerize", "Commit" … and "(task)" for the time of tasks no nested event names.
"""

from __future__ import annotations

import collections
import json
from typing import Any

CATEGORIES = [
    "devtools.timeline",
    "disabled-by-default-devtools.timeline",
    "blink",
    "cc",
    "toplevel",
    "v8.execute",
]


def main_thread(trace: bytes, seconds: float) -> dict[str, tuple[float, float]]:
    """Self time (ms) and count per event name per second, on the busiest renderer main
    thread."""
    events: list[dict[str, Any]] = json.loads(trace)["traceEvents"]
    mains = {
        (e["pid"], e["tid"])
        for e in events
        if e.get("ph") == "M" and e.get("name") == "thread_name"
        and e.get("args", {}).get("name") == "CrRendererMain"
    }  # fmt: skip
    per_thread: dict[tuple[int, int], list[tuple[float, float, str]]] = collections.defaultdict(
        list
    )
    open_: dict[tuple[int, int], list[tuple[float, str]]] = collections.defaultdict(list)
    for e in events:
        key = (e.get("pid"), e.get("tid"))
        if key not in mains:
            continue
        ph = e.get("ph")
        if ph == "X" and "dur" in e:
            per_thread[key].append((e["ts"], e["ts"] + e["dur"], e["name"]))
        elif ph == "B":
            open_[key].append((e["ts"], e["name"]))
        elif ph == "E" and open_[key]:
            start, name = open_[key].pop()
            per_thread[key].append((start, e["ts"], name))
    best: dict[str, float] = {}
    counts: collections.Counter[str] = collections.Counter()
    for spans in per_thread.values():
        selfs, seen = _self_times(spans)
        if sum(selfs.values()) > sum(best.values()):
            best, counts = selfs, seen
    return {name: (us / 1000 / seconds, counts[name] / seconds) for name, us in best.items()}


def _self_times(
    spans: list[tuple[float, float, str]],
) -> tuple[dict[str, float], collections.Counter[str]]:
    """Self time per name (µs) of properly nested spans, a top-level span being a task;
    and how many of each."""
    spans.sort(key=lambda s: (s[0], -s[1]))
    totals: collections.Counter[str] = collections.Counter()
    counts = collections.Counter(name for _start, _end, name in spans)
    stack: list[list[Any]] = []  # [end, name, child time]
    for start, end, name in spans:
        while stack and stack[-1][0] <= start:
            _close(stack, totals)
        if stack and end > stack[-1][0]:
            end = stack[-1][0]  # overlapping rather than nested: clip to the parent
        stack.append([end, name, 0.0, start])
    while stack:
        _close(stack, totals)
    return dict(totals), counts


def _close(stack: list[list[Any]], totals: collections.Counter[str]) -> None:
    end, name, children, start = stack.pop()
    span = end - start
    label = "(task)" if not stack else name
    totals[label] += max(0.0, span - children)
    if stack:
        stack[-1][2] += span
