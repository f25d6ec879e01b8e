"""`hf-run-job usage`: what the runs in the results sink used, and what that cost, per day,
model, run config or provider. The numbers are the records' own, summed: a single run's
record counts one item; a batch's record counts the items it ran (succeeded and failed: what
it continued counts in the run that finishes it) and carries what they used.

The cost is an estimate from a price table (`HF_PRICES`, JSON, over the defaults):
- hf-inference bills compute time at the price of the hardware (`x-compute-time`,
  `x-compute-type` on each answer). Defaults: CPU $0.033 an hour, the smallest CPU of
  Inference Endpoints (huggingface.co/docs/inference-endpoints/pricing, aws intel-spr x1);
  GPU $0.50 an hour, "as low as $0.5 per GPU/hr" (huggingface.co/docs/inference-endpoints,
  "Access Inference Endpoints"). Read 2026-12-01.
- Inference Providers bill tokens at the provider's rate, with no markup from Hugging Face
  (huggingface.co/docs/inference-providers/pricing). Defaults: $0.05 a million input tokens
  and $0.08 a million output tokens, Groq's rate for Llama 3.1 8B Instant (groq.com/pricing,
  2025): the cheapest common case; set your providers' rates.
- provider: local and named endpoints: $0 a run (an endpoint is billed by the hour it is up,
  not by the request).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import date
from typing import Any

from function.envelope import count, seconds

GROUPINGS = ("day", "model", "run-config", "provider")
DEFAULT_PRICES: dict[str, Any] = {
    "compute_per_hour": {"cpu": 0.033, "gpu": 0.50},
    "tokens_per_million": {"input": 0.05, "output": 0.08},
}


@dataclass
class Totals:
    runs: int = 0
    items: int = 0
    successes: int = 0
    failures: int = 0
    characters: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    compute_s: float = 0.0
    cache_hits: int = 0
    cost_usd: float = 0.0

    def add(self, record: dict[str, Any], prices: dict[str, Any], new_run: bool) -> None:
        summary = record.get("summary") if record.get("kind") == "batch" else None
        if isinstance(summary, dict):  # the items it ran: what it continued counts where it runs
            self.successes += _int(summary.get("succeeded"))
            self.failures += _int(summary.get("failed"))
            self.items += _int(summary.get("succeeded")) + _int(summary.get("failed"))
            self.cache_hits += _int(summary.get("cache_hits"))
        else:
            self.items += 1
            self.successes += record.get("success") is True
            self.failures += record.get("success") is not True
            self.cache_hits += bool(record.get("cache_hit"))
        self.runs += new_run
        self.characters += _int(record.get("characters"))
        self.input_tokens += _int(record.get("prompt_tokens"))
        self.output_tokens += _int(record.get("completion_tokens"))
        self.compute_s += _number(record.get("compute_time_s"))
        self.cost_usd += cost(record, prices)

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["compute_s"] = round(self.compute_s, 3)
        values["cost_usd"] = round(self.cost_usd, 9)  # a run can cost millionths of a dollar
        return values


def price_table(overrides: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The default prices with HF_PRICES over them, key by key."""
    return {name: {**rates, **overrides.get(name, {})} for name, rates in DEFAULT_PRICES.items()}


def cost(record: dict[str, Any], prices: dict[str, Any]) -> float:
    """The estimated dollars of one record (see the module)."""
    where = str(record.get("where") or "")
    if where == "local" or where.startswith("endpoint:") or record.get("compute_type") == "local":
        return 0.0
    tokens = prices["tokens_per_million"]
    spent = (
        _int(record.get("prompt_tokens")) * tokens["input"]
        + _int(record.get("completion_tokens")) * tokens["output"]
    ) / 1e6
    if where.startswith("router"):  # tokens only
        return spent
    # hf-inference (and batches that ran in more than one place, which say no `where`):
    # compute seconds at the price of their hardware, per hardware when a batch used several.
    summary = record.get("summary") if record.get("kind") == "batch" else None
    by_type = summary.get("compute_time_s_by_type") if isinstance(summary, dict) else None
    if not isinstance(by_type, dict):
        by_type = {str(record.get("compute_type") or "cpu"): record.get("compute_time_s")}
    return spent + sum(_number(s) * _hourly(kind, prices) / 3600 for kind, s in by_type.items())


def _hourly(hardware: Any, prices: dict[str, Any]) -> float:
    """The price of an hour of compute on this hardware (x-compute-type, CPU if unsaid):
    the table's own price for it, else CPU for a CPU and GPU for any other hardware (the API
    says `cpu`, or an accelerator such as `1-a10-g`, `8-nvidia-h100-80gb-hbm3`); nothing for
    this process or the API's own cache (`cache`)."""
    kind = str(hardware or "cpu").lower()
    if kind in ("local", "cache"):
        return 0.0
    per_hour = prices["compute_per_hour"]
    return float(per_hour.get(kind, per_hour["cpu"] if "cpu" in kind else per_hour["gpu"]))


def usage(
    runs: Iterable[list[dict[str, Any]]],
    by: str,
    prices: dict[str, Any],
    since: date | None = None,
    until: date | None = None,
) -> tuple[dict[str, Totals], Totals]:
    """Totals per group, and over all, of the runs' records between `since` and `until`."""
    groups: dict[str, Totals] = {}
    total = Totals()
    seen: set[tuple[str, str]] = set()  # (group, run id): a run counts once in each group
    for records in runs:
        for record in records:
            day = str(record.get("started_at") or "")[:10]
            if (since and day < since.isoformat()) or (until and day > until.isoformat()):
                continue
            key = _key(record, by)
            run = str(record.get("run_id"))
            groups.setdefault(key, Totals()).add(record, prices, (key, run) not in seen)
            total.add(record, prices, ("", run) not in seen)
            seen |= {(key, run), ("", run)}
    return dict(sorted(groups.items())), total


def _key(record: dict[str, Any], by: str) -> str:
    if by == "day":
        return str(record.get("started_at") or "-")[:10]
    if by == "model":
        return str(record.get("model") or "-")
    if by == "run-config":
        return str(record.get("run_config") or "-")
    return str(record.get("provider") or record.get("where") or "-")


def table(groups: dict[str, Totals], total: Totals, by: str) -> str:
    names = [f.name for f in fields(Totals)]
    rows = [[by, *names]]
    for key, totals in [*groups.items(), ("total", total)]:
        values = totals.as_dict()
        rows.append([key, *(_cell(values[n], n) for n in names)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )


def _cell(value: Any, name: str) -> str:
    if name == "cost_usd":
        return f"${value:,.6f}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}"


def _int(value: Any) -> int:
    """A count in a record, or 0 if it is not a plausible one (damaged, or hand-edited)."""
    return count(value) or 0


def _number(value: Any) -> float:
    """Seconds in a record, or 0 if they are not plausible (NaN, infinite, negative)."""
    return seconds(value) or 0.0
