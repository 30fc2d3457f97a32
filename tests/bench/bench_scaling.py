"""How the cost of a decision grows with the work loaded, in process (prints one JSON object):

    python tests/bench/bench_scaling.py rules [--seconds 2]      # 10, 100, 1 000 rules in one document
    python tests/bench/bench_scaling.py rulesets [--seconds 2]   # 3, 30, 300 documents loaded

`rules`: fire-linkage with its four grade rules kept and generated rules added up to the size, each
one a threshold on deaths with one situation (`deaths 以上 k` and a flag), calling one unit; loaded
with the project's loader (every check), then the pool of 1 000 varied fire incidents evaluated.
`rulesets`: the three rule sets the load generator uses (fire, flood, township), each copied under
new versions (earlier effective_from, so the bundled one stays in force) and under new names
claiming incident types of their own, to 3, 30 and 300 documents; select + evaluate per decision,
for the bundled incident types and for incidents spread over every loaded rule set, and the
time to load, check and compile the tree.

Documents are generated into a temporary directory, removed afterwards. Every loop is bounded in
count (MAX_EVALUATIONS) and in --seconds.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench_common import GENERATORS, RULES, incident_pool
from liandong.engine.result import Incident
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook

MAX_EVALUATIONS = 20_000
WARMUP = 200
RULE_COUNTS = (10, 100, 1000)
DOCUMENT_COUNTS = (3, 30, 300)


def read(ruleset: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((RULES / ruleset / "2024.1.yaml").read_text(encoding="utf-8"))
    return doc


def write(root: Path, ruleset: str, doc: dict[str, Any], source: str) -> None:
    out = root / doc["ruleset"]
    if not out.exists():
        out.mkdir(parents=True)
        shutil.copytree(RULES / source / "sources", out / "sources")  # what the document cites
    path = out / f"{doc['version']}.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def rules_document(n: int) -> dict[str, Any]:
    """fire-linkage with n rules: its grade rules and generated situation rules."""
    doc = read("fire-linkage")
    flags = [k for k, v in doc["inputs"].items() if v["type"] == "boolean"]
    units = [u["id"] for u in doc["units"] if u.get("member", True)]
    keep = [r for r in doc["rules"] if r["id"].startswith("grade-")]
    generated = [
        {
            "id": f"generated-{i}",
            "title": f"generated rule {i}: deaths 以上 {i % 40} with {flags[i % len(flags)]}",
            "citation": ["第四条(三)1"],
            "when": {"all": [{"deaths": {"以上": i % 40}}, {flags[i % len(flags)]: True}]},
            "then": {"units": [units[i % len(units)]], "obligations": ["dispatch_on_order"]},
        }
        for i in range(n - len(keep))
    ]
    doc["rules"] = keep + generated
    return doc


def timed_decisions(book: RuleBook, incidents: list[Incident], seconds: float) -> dict[str, float]:
    for incident in incidents[:WARMUP]:
        book.determine(incident)
    durations: list[float] = []
    fired: list[int] = []
    clock = time.perf_counter
    end = clock() + seconds
    i = 0
    while i < MAX_EVALUATIONS and clock() < end:
        incident = incidents[i % len(incidents)]
        start = clock()
        det = book.determine(incident)  # select + evaluate
        durations.append(clock() - start)
        fired.append(len(det.matched_rules))
        i += 1
    return {
        "n": len(durations),
        "mean_us": round(statistics.fmean(durations) * 1e6, 1),
        "median_us": round(statistics.median(durations) * 1e6, 1),
        "fired_mean": round(statistics.fmean(fired), 2),
    }


def growth(sizes: list[int], costs: list[float]) -> list[dict[str, float]]:
    """Between successive sizes: the size ratio, the cost ratio (of medians), and the exponent b of
    cost ~ size^b (b = 1 linear, b > 1 worse than linear, b = 0 constant)."""
    out = []
    for (n1, c1), (n2, c2) in zip(zip(sizes, costs, strict=True), zip(sizes[1:], costs[1:], strict=True), strict=False):
        out.append(
            {
                "from": n1,
                "to": n2,
                "size_ratio": round(n2 / n1, 2),
                "cost_ratio": round(c2 / c1, 2) if c1 else float("nan"),
                "exponent": round(math.log(c2 / c1) / math.log(n2 / n1), 2) if c1 > 0 and c2 > 0 else float("nan"),
            }
        )
    return out


def marginal_costs(sizes: list[int], costs: list[float]) -> list[float]:
    """What one more unit costs between successive sizes: a per-unit cost free of the fixed part. If
    it rises with size (ratio above 1), the cost grows worse than linearly."""
    return [round((costs[k + 1] - costs[k]) / (sizes[k + 1] - sizes[k]), 3) for k in range(len(sizes) - 1)]


def by_rules(seconds: float) -> dict[str, Any]:
    incidents = [Incident(type=t, facts=f, id=f"s{i}") for i, (t, f) in enumerate(incident_pool("fire-linkage", 1000))]
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="liandong-bench-rules-") as tmp:
        for n in RULE_COUNTS:
            root = Path(tmp) / f"rules-{n}"
            write(root, "fire-linkage", rules_document(n), "fire-linkage")
            start = time.perf_counter()
            book = RuleBook.load(root, DurableRuntime())
            load_s = time.perf_counter() - start
            row = timed_decisions(book, incidents, seconds)
            row["load_s"] = round(load_s, 3)
            row["per_rule_us"] = round(row["median_us"] / n, 3)
            rows[str(n)] = row
    sizes = list(RULE_COUNTS)
    means = [rows[str(n)]["median_us"] for n in sizes]  # medians: this machine is shared
    loads = [rows[str(n)]["load_s"] * 1e6 for n in sizes]
    marginal = marginal_costs(sizes, means)  # µs of evaluation per added rule
    marginal_load = marginal_costs(sizes, loads)  # µs of load + compile per added rule
    return {
        "sizes": rows,
        "evaluation_growth": growth(sizes, means),
        "fired_growth": growth(sizes, [rows[str(n)]["fired_mean"] for n in sizes]),
        "load_growth": growth(sizes, [rows[str(n)]["load_s"] for n in sizes]),
        "marginal_us_per_rule": marginal,
        "marginal_ratio": round(marginal[-1] / marginal[0], 2) if marginal[0] > 0 else float("nan"),
        "marginal_load_us_per_rule": marginal_load,
        "marginal_load_ratio": round(marginal_load[-1] / marginal_load[0], 2) if marginal_load[0] > 0 else float("nan"),
    }


BASES = ("fire-linkage", "flood-control", "township-mass-incident")


def tree(root: Path, documents: int) -> list[tuple[str, str]]:
    """`documents` documents below root; the (rule set, incident type) of every rule set written."""
    per_base = documents // len(BASES)
    claimed: list[tuple[str, str]] = []
    for base in BASES:
        original = read(base)
        write(root, base, original, base)
        claimed.append((base, original["incident_types"][0]))
        for j in range(1, per_base):
            doc = copy.deepcopy(original)
            if j % 2:  # another version of the same rule set, in force before the bundled one
                doc["version"] = f"2000.{j}"
                doc["effective_from"] = dt.date(2000, 1, 1) + dt.timedelta(days=j)
            else:  # another rule set of its own, with an incident type of its own
                doc["ruleset"] = f"{base}-copy-{j}"
                doc["incident_types"] = [f"{original['incident_types'][0]}_copy_{j}"]
                claimed.append((doc["ruleset"], doc["incident_types"][0]))
            write(root, base, doc, base)
    return claimed


def by_rulesets(seconds: float, sizes: tuple[int, ...] = DOCUMENT_COUNTS) -> dict[str, Any]:
    pools = {base: incident_pool(base, 300) for base in BASES}
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="liandong-bench-rulesets-") as tmp:
        for n in sizes:
            root = Path(tmp) / f"docs-{n}"
            claimed = tree(root, n)
            start = time.perf_counter()
            book = RuleBook.load(root, DurableRuntime())
            load_s = time.perf_counter() - start
            bundled = [
                Incident(type=pools[b][i][0], facts=pools[b][i][1], id=f"b{i}") for i in range(300) for b in BASES
            ]
            spread = []
            for i in range(900):
                ruleset, incident_type = claimed[i % len(claimed)]
                base = next(b for b in BASES if ruleset.startswith(b))
                spread.append(Incident(type=incident_type, facts=pools[base][i % 300][1], id=f"s{i}"))
            rows[str(n)] = {
                "documents": sum(len(book.versions(r)) for r in book.rulesets()),
                "rulesets": len(book.rulesets()),
                "load_s": round(load_s, 3),
                "load_per_document_ms": round(load_s / n * 1e3, 2),
                "bundled_types": timed_decisions(book, bundled, seconds / 2),
                "spread": timed_decisions(book, spread, seconds / 2),
            }
    return {
        "sizes": rows,
        "decision_growth_bundled": growth(list(sizes), [rows[str(n)]["bundled_types"]["median_us"] for n in sizes]),
        "decision_growth_spread": growth(list(sizes), [rows[str(n)]["spread"]["median_us"] for n in sizes]),
        "load_growth": growth(list(sizes), [rows[str(n)]["load_s"] for n in sizes]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["rules", "rulesets"])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed evaluations per size (upper bound)")
    parser.add_argument("--quick", action="store_true", help="rulesets: 3, 30 and 90 documents (a smoke run)")
    args = parser.parse_args()
    assert set(BASES) <= set(GENERATORS)
    if args.what == "rules":
        result = by_rules(args.seconds)
    else:
        result = by_rulesets(args.seconds, (3, 30, 90) if args.quick else DOCUMENT_COUNTS)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
