"""`make bench`: hf-run-job against its peer, measured in the same run, as ratios.

A stand-in server (bench/server.py) on 127.0.0.1 answers after 50 ms and refuses (429 +
Retry-After) past 32 requests in flight. The peer is huggingface_hub's AsyncInferenceClient
with asyncio.gather under a semaphore: the best hand-tuned use of it.

Prints a Markdown table of the ratios (the README keeps a copy). Goals, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
MODEL = "facebook/bart-large-mnli"
EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
LABELS = ["billing", "shipping", "technical", "account"]
LATENCY, CAP = 0.05, 32


class Server:
    def __init__(self, *, latency: float, cap: int | None) -> None:
        args = [sys.executable, str(HERE / "server.py"), "--latency", str(latency)]
        if cap is not None:
            args += ["--cap", str(cap)]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.endpoint = f"http://127.0.0.1:{self.port}/hf-inference"

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def scratch() -> Path:
    """A folder for a measurement's files (outputs of hundreds of MB), removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="hf-run-job-bench-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def texts(n: int, unique: int, seed: int = 7) -> list[str]:
    """`n` ticket texts of which the first `unique` are distinct and the rest repeat them."""
    rng = random.Random(seed)
    return [
        f"ticket {i if i < unique else rng.randrange(unique)}: my parcel is late" for i in range(n)
    ]


def ours(items: list[str], endpoint: str, workdir: Path, *args: str) -> tuple[dict, int]:
    """`hf-run-job batch` in a new process: its summary and its peak RSS (KiB)."""
    source, output = workdir / "in.jsonl", workdir / "out.jsonl"
    source.write_text("".join(json.dumps(t) + "\n" for t in items))
    env = {
        **os.environ,
        "HUGGINGFACE_API_ENDPOINT": endpoint,
        "HUGGINGFACE_API_KEY": "hf_bench",
        "RESULTS_URI": str(workdir / "runs"),
    }
    process = subprocess.Popen(
        [str(BIN / "hf-run-job"), "batch", "--input", str(source), "--output", str(output), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    assert status == 0 or out, f"hf-run-job batch failed ({status})"
    summary = json.loads(out.splitlines()[-1])
    assert summary["total"] == len(items), summary
    return summary, usage.ru_maxrss


async def peer(items: list[str], url: str, concurrency: int, task: str) -> tuple[float, int]:
    """huggingface_hub's AsyncInferenceClient, gather under a semaphore: items/s and items lost."""
    from huggingface_hub import AsyncInferenceClient

    client = AsyncInferenceClient(token="hf_bench", timeout=60)
    limit = asyncio.Semaphore(concurrency)

    async def one(text: str) -> bool:
        async with limit:
            try:
                if task == "zero-shot":
                    await client.zero_shot_classification(text, LABELS, model=url)
                else:
                    await client.feature_extraction(text, model=url)
            except Exception:
                return False
            return True

    started = time.perf_counter()
    results = await asyncio.gather(*(one(t) for t in items))
    elapsed = time.perf_counter() - started
    await client.close() if hasattr(client, "close") else None
    return len(items) / elapsed, results.count(False)


# What Lambda bills (us-east-1, arm64 as the template deploys; aws.amazon.com/lambda/pricing,
# read 2026-12-01): per GB-second of duration at the configured memory, and per request.
GB_SECOND_USD = 0.0000133334
REQUEST_USD = 0.20 / 1_000_000
PER_ITEM = """
import json, os, sys, time
from handler import lambda_handler

class Context:
    def __init__(self): self.start = time.monotonic()
    def get_remaining_time_in_millis(self): return 60000
    aws_request_id = "bench"; function_name = "hf-run-job"; memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:hf-run-job"

labels = sys.argv[2]
durations = []
for i in range(int(sys.argv[1])):
    started = time.perf_counter()
    event = {"text": f"ticket {i}: my parcel is late", "candidate_labels": labels}
    reply = lambda_handler(event, Context())
    durations.append(time.perf_counter() - started)
    assert reply["success"], reply
print(json.dumps(durations))
"""


def per_item_invocations(endpoint: str, workdir: Path, count: int) -> list[float]:
    """The Xano-style job: one warm Lambda invocation per item (the handler called once an
    item in one process, each writing its run record): each invocation's duration."""
    env = {
        **os.environ,
        "HUGGINGFACE_API_ENDPOINT": endpoint,
        "HUGGINGFACE_API_KEY": "hf_bench",
        "RESULTS_URI": str(workdir / "runs-per-item"),
        "AWS_LAMBDA_FUNCTION_NAME": "hf-run-job",
        "POWERTOOLS_METRICS_NAMESPACE": "HfRunJob",
    }
    done = subprocess.run(
        [sys.executable, "-c", PER_ITEM, str(count), ",".join(LABELS)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def lambda_cost(seconds: float, requests: int, memory_mb: int) -> tuple[float, float]:
    """GB-seconds (billed by the ms) and dollars of that duration and those requests."""
    gb_seconds = memory_mb / 1024 * seconds
    return gb_seconds, gb_seconds * GB_SECOND_USD + requests * REQUEST_USD


# The last commit before provider: local (issue 9): `import handler` must cost what it did.
BEFORE_LOCAL = "b5a260d"


def cold_starts(statements: list[tuple[str, Path]], runs: int) -> list[float]:
    """Best wall time of a new interpreter that runs each statement in its folder, the runs
    interleaved (so that drift on a shared machine hits all alike). Our modules are compiled
    first, as the dependencies were when pip installed them. The interpreter leaves with
    `os._exit`: a cold start is the start and the imports (Lambda never tears its runtime
    down there), and teardown would add the same noisy ~30 ms to both sides."""
    for folder in {folder for _, folder in statements}:
        code = [str(folder / "function"), str(folder / "handler.py")]
        subprocess.run([sys.executable, "-m", "compileall", "-q", *code], check=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    best = [float("inf")] * len(statements)
    for _ in range(runs):
        for i, (statement, folder) in enumerate(statements):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", f"{statement}; import os; os._exit(0)"],
                cwd=folder,
                env=env,
                check=True,
            )
            best[i] = min(best[i], time.perf_counter() - started)
    return best


def before_local() -> Path | None:
    """The job's code as it was before provider: local, from git (None: no such history,
    as in a shallow clone)."""
    folder = scratch()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", BEFORE_LOCAL, "handler.py", "function"],
        capture_output=True,
    )
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


async def transport_cost(endpoint: str, transport: str, requests: int) -> tuple[float, float]:
    """Requests/s and CPU ms per request of one httpx client with `CAP` requests in flight:
    httpx's own pool, or the aiohttp transport the batches use."""
    import httpx

    from function.client import _ssl_context
    from function.transport import AiohttpClient

    limits = httpx.Limits(max_connections=CAP, max_keepalive_connections=CAP)
    client = (
        AiohttpClient(ssl_context=_ssl_context(), max_connections=CAP, timeout=30)
        if transport == "aiohttp"
        else httpx.AsyncClient(limits=limits, timeout=30)
    )
    url = f"{endpoint}/models/{MODEL}"
    body = json.dumps({"inputs": "x", "parameters": {"candidate_labels": LABELS}}).encode()
    limit = asyncio.Semaphore(CAP)
    async with client:

        async def one() -> None:
            async with limit:
                response = await client.post(url, content=body)
                response.raise_for_status()

        await asyncio.gather(*(one() for _ in range(CAP)))  # warm the connections
        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one() for _ in range(requests)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return requests / elapsed, cpu / requests * 1000


def local_rows(
    python: str, items: int, mixed_items: int, rss_items: int
) -> list[tuple[str, str, str, str]]:
    """provider: local (bench/local.py, in a Python that has the [local] extra)."""

    def run(*args: str) -> dict:
        done = subprocess.run(
            [python, str(HERE / "local.py"), *args],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    rates = run("measure", str(items))
    mixed = run("mixed", str(mixed_items))
    rss_small, rss_large = run("rss", "1000")["rss"], run("rss", str(rss_items))["rss"]
    return [
        (
            f"local feature-extraction items/s vs SentenceTransformer.encode ({items:,} texts, "
            "best of each side's rounds)",
            f"{rates['ours']:.0f} / {rates['encode']:.0f}",
            f"{rates['ratio']:.2f} (pairs' median {rates['pair_median']:.2f})",
            ">= 0.9",
        ),
        (
            f"the same on texts of 4 to 360 words ({mixed_items:,} texts)",
            f"{mixed['ours']:.1f} / {mixed['encode']:.1f}",
            f"{mixed['ratio']:.2f} (pairs' median {mixed['pair_median']:.2f})",
            ">= 0.9",
        ),
        (
            "local feature-extraction items/s vs one pipeline call per item",
            f"{rates['ours']:.0f} / {rates['per_item']:.0f}",
            f"{rates['ours'] / rates['per_item']:.2f}",
            ">= 2.5",
        ),
        (
            f"local peak RSS, {rss_items:,} vs 1,000 items",
            f"{rss_large / 1024:.0f} / {rss_small / 1024:.0f} MiB",
            f"{rss_large / rss_small:.2f}",
            "<= 1.3",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--rss-items", type=int, default=100_000)
    parser.add_argument("--cold-runs", type=int, default=40)
    parser.add_argument("--local-items", type=int, default=2000)
    parser.add_argument("--local-mixed-items", type=int, default=600)
    parser.add_argument("--per-item-invocations", type=int, default=300)
    parser.add_argument("--memory-mb", type=int, default=512, help="the template's default")
    parser.add_argument("--local-rss-items", type=int, default=20_000)
    parser.add_argument(
        "--local-python",
        default=str(ROOT / ".venv" / "bin" / "python"),
        help="a Python with the [local] extra (the test virtualenv): provider: local rows",
    )
    args = parser.parse_args()
    rows: list[tuple[str, str, str, str]] = []
    work = scratch()
    n = args.items
    unique = n * 4 // 5  # 20% duplicates

    zero_shot = texts(n, unique)
    limit = n / (unique * LATENCY / CAP)  # items/s if every unique request used a slot
    with Server(latency=LATENCY, cap=CAP) as server:
        url = f"{server.endpoint}/models/{MODEL}"
        summary, _ = ours(zero_shot, server.endpoint, work, "--label", ",".join(LABELS))
        ours_rate = summary["items_per_s"]
        peer_rate, peer_lost = asyncio.run(peer(zero_shot, url, CAP, "zero-shot"))
        _, lost_64 = asyncio.run(peer(zero_shot, url, 64, "zero-shot"))
        one_each = per_item_invocations(server.endpoint, work, args.per_item_invocations)
    rows.append(
        (
            "zero-shot items/s vs the theoretical limit (cap unknown to us)",
            f"{ours_rate:.0f} / {limit:.0f}",
            f"{ours_rate / limit:.2f}",
            ">= 0.9",
        )
    )
    rows.append(
        (
            f"zero-shot items/s vs peer, semaphore {CAP} ({peer_lost} lost)",
            f"{ours_rate:.0f} / {peer_rate:.0f}",
            f"{ours_rate / peer_rate:.2f}",
            ">= 1.2",
        )
    )
    rows.append(
        (
            "items lost to 429s: ours vs peer with semaphore 64",
            f"{summary['total'] - summary['succeeded']} / {lost_64}",
            "-",
            "ours 0",
        )
    )

    # Lambda cost of 10,000 such items: our batch in one invocation (its measured rate; a
    # request is the queue message or the call) against one invocation per item.
    batch_s = 10_000 / ours_rate
    each_s = 10_000 * sum(one_each) / len(one_each)
    ours_gbs, ours_usd = lambda_cost(batch_s, 1, args.memory_mb)
    each_gbs, each_usd = lambda_cost(each_s, 10_000, args.memory_mb)
    rows.append(
        (
            f"Lambda per 10,000 zero-shot items at {args.memory_mb} MB: GB-s (and $), "
            "one invocation per item vs our batch",
            f"{each_gbs:,.1f} GB-s ${each_usd:.4f} / {ours_gbs:,.1f} GB-s ${ours_usd:.4f}",
            f"{each_gbs / ours_gbs:.1f}x fewer",
            ">= 20x fewer",
        )
    )

    embed = texts(n, n)
    with Server(latency=LATENCY, cap=CAP) as server:
        url = f"{server.endpoint}/models/{EMBEDDER}/pipeline/feature-extraction"
        summary, _ = ours(
            embed,
            server.endpoint,
            work,
            "--task",
            "feature-extraction",
            "--model",
            EMBEDDER,
            "--label",
            "null",
            "--batch-size",
            "32",
        )
        fe_peer, _ = asyncio.run(peer(embed, url, CAP, "feature-extraction"))
    rows.append(
        (
            "feature-extraction items/s vs peer (one text per request)",
            f"{summary['items_per_s']:.0f} / {fe_peer:.0f}",
            f"{summary['items_per_s'] / fe_peer:.2f}",
            ">= 5",
        )
    )

    with Server(latency=0.0, cap=None) as server:
        small = texts(1000, 1000)
        large = texts(args.rss_items, 1000)
        _, rss_small = ours(small, server.endpoint, work, "--label", ",".join(LABELS))
        _, rss_large = ours(large, server.endpoint, work, "--label", ",".join(LABELS))
    rows.append(
        (
            f"peak RSS, {args.rss_items:,} vs 1,000 items",
            f"{rss_large / 1024:.0f} / {rss_small / 1024:.0f} MiB",
            f"{rss_large / rss_small:.2f}",
            "<= 1.3",
        )
    )

    with Server(latency=LATENCY, cap=None) as server:
        requests = max(1000, n // 2)
        lean_rate, lean_cpu = asyncio.run(transport_cost(server.endpoint, "aiohttp", requests))
        pool_rate, pool_cpu = asyncio.run(transport_cost(server.endpoint, "httpx", requests))
    rows.append(
        (
            f"HTTP transport, {CAP} in flight: CPU ms/request, aiohttp vs httpx's pool",
            f"{lean_cpu:.2f} / {pool_cpu:.2f} ms",
            f"{lean_cpu / pool_cpu:.2f}",
            "< 1",
        )
    )
    rows.append(
        (
            f"HTTP transport, {CAP} in flight: requests/s, aiohttp vs httpx's pool",
            f"{lean_rate:.0f} / {pool_rate:.0f} (limit {CAP / LATENCY:.0f})",
            f"{lean_rate / pool_rate:.2f}",
            "> 1",
        )
    )

    rows += local_rows(
        args.local_python, args.local_items, args.local_mixed_items, args.local_rss_items
    )

    earlier = before_local()
    statements = [
        "import handler",
        "import httpx, pydantic_settings",
        "import httpx, pydantic_settings, aws_lambda_powertools.logging, "
        "aws_lambda_powertools.metrics",
        "from huggingface_hub import InferenceClient",
    ]
    colds = cold_starts(
        [(statement, ROOT) for statement in statements]
        + ([("import handler", earlier)] if earlier else []),
        args.cold_runs,
    )
    ours_cold, deps_cold, declared_cold, hub_cold = colds[:4]
    if earlier:
        rows.append(
            (
                f"cold start: import handler vs the same at {BEFORE_LOCAL} (before provider: "
                "local)",
                f"{ours_cold * 1000:.0f} / {colds[4] * 1000:.0f} ms",
                f"{ours_cold / colds[4]:.2f}",
                "<= 1.05",
            )
        )
    rows.append(
        (
            "cold start: import handler vs its runtime deps (httpx, pydantic_settings)",
            f"{ours_cold * 1000:.0f} / {deps_cold * 1000:.0f} ms",
            f"{ours_cold / deps_cold:.2f}",
            "<= 1.15",
        )
    )
    rows.append(
        (
            "cold start: import handler vs its declared runtime deps (+ Powertools)",
            f"{ours_cold * 1000:.0f} / {declared_cold * 1000:.0f} ms",
            f"{ours_cold / declared_cold:.2f}",
            "<= 1.10",
        )
    )
    rows.append(
        (
            "cold start: import handler vs huggingface_hub InferenceClient",
            f"{ours_cold * 1000:.0f} / {hub_cold * 1000:.0f} ms",
            f"{ours_cold / hub_cold:.2f}",
            "< 1.0",
        )
    )

    print(
        f"hf-run-job bench, {date.today()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {n:,} items, server latency {LATENCY * 1000:.0f} ms, "
        f"cap {CAP}\n"
    )
    print("| measure | ours / peer | ratio | goal |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
