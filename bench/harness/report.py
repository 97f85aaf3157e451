# -*- test-case-name: tests.test_bench_harness -*-
"""
Results: per-case summaries (median and min-max of the valid runs), ratios
to each case's baseline (nginx for HTTP and TLS, HAProxy for TCP), the
text table, the JSON document and the optional PNG chart.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Collection, Dict, List, Optional, Sequence

import attrs

from bench.harness.scenarios import CaseData, TargetResult
from bench.harness.stats import Summary, ratio, summarise

#: JSON schema identifier, bumped when the document's shape changes.
SCHEMA = "linkerpy-bench/1"


@attrs.frozen
class Metric:
    """
    How a metric is shown.

    @ivar label: column header.
    @ivar fmt: format for one value.
    @ivar showRatio: whether a ratio-to-baseline column follows it.
    @ivar higherIsBetter: for the reader (and the chart's title).
    """

    label: str
    fmt: str
    showRatio: bool = False
    higherIsBetter: bool = False


METRICS: Dict[str, Metric] = {
    "rps": Metric("req/s", "{:,.0f}", True, True),
    "p50_ms": Metric("p50 ms", "{:.2f}"),
    "p99_ms": Metric("p99 ms", "{:.2f}", True),
    "cpu_us_per_req": Metric("CPU us/req", "{:.1f}", True),
    "conn_per_s": Metric("conn/s", "{:,.0f}", True, True),
    "cpu_us_per_conn": Metric("CPU us/conn", "{:.1f}", True),
    "gbps": Metric("Gbit/s", "{:.2f}", True, True),
    "cpu_ms_per_gb": Metric("CPU ms/GB", "{:.0f}", True),
    "idle_rss_mib": Metric("idle RSS MiB", "{:.1f}", True),
    "loaded_rss_mib": Metric("RSS MiB w/ conns", "{:.1f}", True),
    "per_conn_kib": Metric("KiB/conn", "{:.1f}", True),
}


def validRuns(result: TargetResult) -> List[Dict[str, Any]]:
    """
    The runs that count: those marked valid.
    """
    return [r for r in result.runs if r.get("valid")]


def summariseResult(result: TargetResult, metrics: Sequence[str]) -> Dict[str, Summary]:
    """
    Median and spread of each metric over the valid runs.
    """
    runs = validRuns(result)
    out: Dict[str, Summary] = {}
    for key in metrics:
        s = summarise(r.get(key) for r in runs)
        if s is not None:
            out[key] = s
    return out


def caseSummaries(case: CaseData) -> Dict[str, Dict[str, Summary]]:
    """
    Summaries of every available target of C{case}.
    """
    return {
        name: summariseResult(res, case.metrics) for name, res in case.results.items() if res.available
    }


def caseRatios(case: CaseData) -> Dict[str, Dict[str, Optional[float]]]:
    """
    Each target's median divided by the baseline's, per metric shown with a
    ratio.  Targets (or the baseline) without a value get L{None}.
    """
    sums = caseSummaries(case)
    base = sums.get(case.baseline, {})
    out: Dict[str, Dict[str, Optional[float]]] = {}
    for name, s in sums.items():
        out[name] = {
            key: ratio(s.get(key), base.get(key)) for key in case.metrics if METRICS[key].showRatio
        }
    return out


def formatSummary(s: Optional[Summary], fmt: str, spread: bool = True) -> str:
    """
    C{"median [min-max]"} (or just the median), C{"-"} when missing.
    """
    if s is None:
        return "-"
    text = fmt.format(s.median)
    if spread and s.count > 1:
        text += f" [{fmt.format(s.low)}-{fmt.format(s.high)}]"
    return text


def formatRatio(value: Optional[float]) -> str:
    """
    A ratio as C{"0.42x"}, C{"-"} when missing.
    """
    return "-" if value is None else f"{value:.2f}x"


def reasonLines(reason: Optional[str], limit: int = 4, width: int = 150) -> List[str]:
    """
    A short form of an unavailability reason: its first line, then, of the
    non-blank lines after it (usually the target's log tail), the first one
    and the last ones, up to C{limit} lines in all, each cut to C{width}.
    Keeping both ends shows a config error's heading and a traceback's
    final exception.
    """
    lines = [line.rstrip() for line in (reason or "unavailable").strip().splitlines() if line.strip()]
    if not lines:
        return ["unavailable"]
    head, rest = lines[0], lines[1:]
    room = limit - 1
    if len(rest) > room and room >= 3:
        rest = rest[:1] + ["..."] + rest[len(rest) - (room - 2):]
    else:
        rest = rest[:room]
    kept = [head] + rest
    return [(line[: width - 3] + "...") if len(line) > width else line for line in kept]


def _busyCell(res: TargetResult) -> Optional[str]:
    runs = validRuns(res)
    proxy = summarise(r.get("proxy_cpu_busy") for r in runs)
    client = summarise(r.get("client_cpu_busy") for r in runs)
    if proxy is None or client is None:
        return None
    return f"{proxy.median:.0%}/{client.median:.0%}"


def renderCase(case: CaseData) -> str:
    """
    One case as an aligned text table, with notes for unavailable targets
    and invalid runs.
    """
    sums = caseSummaries(case)
    ratios = caseRatios(case)
    headers = ["target"]
    for key in case.metrics:
        headers.append(METRICS[key].label)
        if METRICS[key].showRatio:
            headers.append(f"vs {case.baseline}")
    showBusy = any(_busyCell(res) is not None for res in case.results.values() if res.available)
    if showBusy:
        headers.append("busy proxy/client")
    headers.append("runs")
    rows: List[List[str]] = []
    notes: List[str] = []
    for name, res in case.results.items():
        if not res.available:
            rows.append([name, "unavailable"] + [""] * (len(headers) - 2))
            first, *rest = reasonLines(res.reason)
            notes.append(f"  {name}: {first}")
            notes.extend(f"      {line}" for line in rest)
            continue
        row = [name]
        for key in case.metrics:
            row.append(formatSummary(sums[name].get(key), METRICS[key].fmt))
            if METRICS[key].showRatio:
                row.append(formatRatio(ratios[name].get(key)))
        if showBusy:
            row.append(_busyCell(res) or "-")
        valid = len(validRuns(res))
        row.append(f"{valid}/{len(res.runs)}")
        rows.append(row)
        if valid < len(res.runs):
            bad = [r for r in res.runs if not r.get("valid")]
            why = bad[0].get("failure") or f"errors {bad[0].get('errors')}"
            notes.append(f"  {name}: {len(bad)} invalid run(s), e.g. {reasonLines(str(why), 1)[0]}")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = [f"== {case.title} (median [min-max]; ratios to {case.baseline}) =="]
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    lines.extend(notes)
    return "\n".join(lines)


def renderTable(cases: Sequence[CaseData]) -> str:
    """
    All cases, one table each.
    """
    return "\n\n".join(renderCase(c) for c in cases)


def caseDocument(case: CaseData) -> Dict[str, Any]:
    """
    The JSON form of one case.
    """
    sums = caseSummaries(case)
    ratios = caseRatios(case)
    results = []
    for name, res in case.results.items():
        entry: Dict[str, Any] = {
            "target": name,
            "available": res.available,
            "reason": res.reason,
            "reference": res.reference,
            "command": res.command,
            "runs": res.runs,
        }
        if res.available:
            entry["summary"] = {k: v.asDict() for k, v in sums[name].items()}
            entry["ratios"] = ratios[name]
        results.append(entry)
    return {
        "scenario": case.scenario,
        "case": case.case,
        "title": case.title,
        "baseline": case.baseline,
        "metrics": list(case.metrics),
        "results": results,
    }


def buildDocument(meta: Dict[str, Any], cases: Sequence[CaseData]) -> Dict[str, Any]:
    """
    The whole JSON document: C{schema}, the run's metadata (time, machine,
    tool versions, options, pinning), then C{cases}.
    """
    doc: Dict[str, Any] = {"schema": SCHEMA}
    doc.update(meta)
    doc["cases"] = [caseDocument(c) for c in cases]
    return doc


def writeJson(doc: Dict[str, Any], path: str) -> None:
    """
    Write C{doc} to C{path} (directories created).
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=False)
        f.write("\n")


def renderChart(doc: Dict[str, Any], path: str) -> None:
    """
    Render the document's cases as horizontal bar charts (median, with
    min-max whiskers) into a PNG: one row per case, one panel per metric
    that has a ratio column (the headline metric and the CPU or
    per-connection cost).  The
    direct-to-origin reference rows are left out: they dwarf the proxies.

    Needs matplotlib (see L{bench.harness.install.ensureMatplotlib}).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for case in doc["cases"]:
        # The headline metric, then the CPU cost (steadier on a shared
        # machine) when the case has one, else the next ratio metric.
        keys = [k for k in case["metrics"] if METRICS[k].showRatio]
        cost = [k for k in keys[1:] if k.startswith("cpu_") or k == "per_conn_kib"]
        for key in keys[:1] + (cost[:1] or keys[1:2]):
            panels.append((case, key))
    if not panels:
        return
    cols = 2
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.6 * rows + 0.6), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (case, key) in zip(axes.flat, panels):
        names, medians, lows, highs, colours = [], [], [], [], []
        for res in case["results"]:
            s = res.get("summary", {}).get(key)
            if not res["available"] or s is None or res.get("reference"):
                continue
            names.append(res["target"])
            medians.append(s["median"])
            lows.append(s["median"] - s["min"])
            highs.append(s["max"] - s["median"])
            colours.append("tab:orange" if res["target"].startswith("linkerpy") else
                           "tab:blue" if res["target"] == case["baseline"] else "tab:gray")
        ypos = list(range(len(names)))
        ax.barh(ypos, medians, xerr=[lows, highs], color=colours, capsize=3)
        ax.set_yticks(ypos)
        ax.set_yticklabels(names)
        ax.invert_yaxis()
        metric = METRICS[key]
        better = "higher is better" if metric.higherIsBetter else "lower is better"
        ax.set_title(f"{case['title']}\n{metric.label} ({better})", fontsize=9)
        ax.tick_params(labelsize=8)
    fig.suptitle(f"linkerpy bench {doc.get('startedAt', '')}", fontsize=10)
    fig.tight_layout()
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fromDict(d: Optional[Dict[str, Any]]) -> Optional[Summary]:
    if d is None:
        return None
    return Summary(median=d["median"], low=d["min"], high=d["max"], count=d["n"])


def renderMarkdown(doc: Dict[str, Any], only: Optional[Collection[str]] = None) -> str:
    """
    Markdown tables (one per case) from a JSON document, for
    C{docs/performance.md}.

    @param only: if given, the target names to include.
    """
    out: List[str] = []
    for case in doc["cases"]:
        metrics = case["metrics"]
        header = ["target"]
        for key in metrics:
            header.append(METRICS[key].label)
            if METRICS[key].showRatio:
                header.append(f"vs {case['baseline']}")
        header.append("runs")
        out.append(f"**{case['title']}** (median [min-max]; ratios to {case['baseline']})")
        out.append("")
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        for res in case["results"]:
            if only is not None and res["target"] not in only:
                continue
            if not res["available"]:
                out.append("| " + " | ".join([res["target"], "unavailable"] + [""] * (len(header) - 2)) + " |")
                continue
            row = [res["target"]]
            for key in metrics:
                row.append(formatSummary(_fromDict(res["summary"].get(key)), METRICS[key].fmt))
                if METRICS[key].showRatio:
                    row.append(formatRatio(res["ratios"].get(key)))
            valid = sum(1 for r in res["runs"] if r.get("valid"))
            row.append(f"{valid}/{len(res['runs'])}")
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    C{python -m bench.harness.report RESULT.json [--only a,b]}: print a saved
    run as Markdown tables.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.harness.report")
    parser.add_argument("json")
    parser.add_argument("--only", default="", help="comma-separated target names to include")
    args = parser.parse_args(argv)
    with open(args.json) as f:
        doc = json.load(f)
    only = {t for t in args.only.split(",") if t} or None
    sys.stdout.write(renderMarkdown(doc, only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
