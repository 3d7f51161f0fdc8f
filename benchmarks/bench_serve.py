"""Load test of `tinydistill serve` on loopback: concurrent clients for a bounded time and request count.

    TINYDISTILL_DATA=../shared/data python benchmarks/bench_serve.py --duration 60 --clients 50
    git worktree add ../base <rev> && python benchmarks/bench_serve.py --model M --against ../base  # side by side

Starts the server as a child process on 127.0.0.1 (a free port), waits for GET /health, then runs `--clients`
keep-alive clients (aiohttp, else httpx; one asyncio loop in this process) that POST /predict with sst2 test
sentences until `--duration` seconds or `--max-requests` requests, whichever comes first. Prints requests/s, texts/s,
p50/p90/p99 latency and the error count, then stops the server. Without `--model`, a CBoW student is trained
for a few steps on sst2 train (serving speed does not depend on accuracy). Client and server share the
machine's cores, so the numbers are a floor for a server with cores of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LOOPBACK = "127.0.0.1"  # never another address: this is a load test


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def sst2(data_dir: str | None, split: str):
    from tinydistill.data import load_paper_dataset, resolve_data_dir

    root = resolve_data_dir(data_dir)
    if root is None:
        raise SystemExit("set --data-dir or $TINYDISTILL_DATA (or pass --model and --texts)")
    return load_paper_dataset("sst2", split, root)


def quick_student(data_dir: str | None, folder: Path) -> Path:
    """A CBoW trained for 40 steps on sst2 train."""
    from tinydistill.distill import TrainConfig
    from tinydistill.students import Student

    train = sst2(data_dir, "train")
    labels = np.asarray(train.label_names)[train.labels]
    return Student("cbow", train=TrainConfig(epochs=1, min_steps=40, max_steps=40)).fit(
        train.texts, labels, train.label_names, progress=False).save_pretrained(folder)


async def load(url: str, texts: list[str], clients: int, duration: float, max_requests: int,
               batch: int) -> dict:
    """Run the clients; returns counts and latencies (seconds) of the successful requests.

    aiohttp when installed: httpx's async pool spends more CPU than the server at 50 connections (~90 req/s
    here against aiohttp's ~2000), and the client shares the cores with the server.
    """
    latencies: list[float] = []
    errors: dict[str, int] = {}
    issued = 0
    deadline = time.perf_counter() + duration
    try:
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients),
                                        timeout=aiohttp.ClientTimeout(total=30))

        async def post(body: dict) -> int:
            async with session.post(url, json=body) as response:
                await response.read()
                return response.status

        failures: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError)
    except ImportError:
        import httpx

        session = httpx.AsyncClient(limits=httpx.Limits(max_connections=clients), timeout=30.0)

        async def post(body: dict) -> int:
            return (await session.post(url, json=body)).status_code

        failures = (httpx.HTTPError,)

    async def client(worker: int) -> None:
        nonlocal issued
        i = worker
        while time.perf_counter() < deadline and issued < max_requests:
            issued += 1
            body = {"text": texts[i % len(texts)]} if batch == 1 else \
                {"texts": [texts[(i + k) % len(texts)] for k in range(batch)]}
            i += clients
            started = time.perf_counter()
            try:
                status = await post(body)
            except failures as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            if status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1

    started = time.perf_counter()
    try:
        await asyncio.gather(*(client(w) for w in range(clients)))
    finally:
        await (session.close() if hasattr(session, "closed") else session.aclose())
    return {"seconds": time.perf_counter() - started, "latencies": latencies, "errors": errors}


def wait_ready(base: str, server: subprocess.Popen, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not answer /health within {timeout:.0f} s")


def measure(model: Path, texts: list[str], args: argparse.Namespace, checkout: str | None = None) -> dict:
    """Start a server for `model` (from `checkout`'s code when given, else this one's), load it, stop it."""
    port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    if checkout:
        env["PYTHONPATH"] = str(Path(checkout).resolve())
    server = subprocess.Popen([sys.executable, "-m", "tinydistill.cli", "-q", "serve", str(model),
                               "--host", LOOPBACK, "--port", str(port)], env=env)
    try:
        wait_ready(base, server)
        result = asyncio.run(load(f"{base}/predict", texts, args.clients, args.duration, args.max_requests,
                                  args.batch))
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    lat = sorted(result["latencies"])
    done, seconds = len(lat), result["seconds"]
    return {
        "code": checkout or "this checkout",
        "clients": args.clients, "batch": args.batch, "seconds": round(seconds, 1), "requests": done,
        "requests_per_s": round(done / seconds, 1), "texts_per_s": round(done * args.batch / seconds, 1),
        "p50_ms": round(1e3 * statistics.median(lat), 2) if lat else None,
        "p90_ms": round(1e3 * lat[int(0.90 * (done - 1))], 2) if lat else None,
        "p99_ms": round(1e3 * lat[int(0.99 * (done - 1))], 2) if lat else None,
        "errors": sum(result["errors"].values()), "error_kinds": result["errors"],
        "load_average": round(os.getloadavg()[0], 1), "cores": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="student folder to serve (default: a quickly trained CBoW)")
    parser.add_argument("--texts", help="file with one text a line to send (default: sst2 test)")
    parser.add_argument("--data-dir", help="folder laid out like shared/data (default: $TINYDISTILL_DATA)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default: %(default)s)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="stop after this many requests")
    parser.add_argument("--batch", type=int, default=1, help="texts per request (1: {'text': ...})")
    parser.add_argument("--against", metavar="CHECKOUT", help="another checkout of tinydistill (e.g. a `git "
                        "worktree` of an older commit): serve the same model with its code too, alternating, and "
                        "print this checkout's requests/s over its (median of the rounds)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each with --against (default: 3)")
    parser.add_argument("--json", help="also write the summary to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        model = Path(args.model) if args.model else quick_student(args.data_dir, Path(tmp) / "cbow")
        texts = Path(args.texts).read_text(encoding="utf-8").splitlines() if args.texts else \
            sst2(args.data_dir, "test").texts
        if not args.against:
            summary: dict = measure(model, texts, args)
        else:  # alternated, so that a change in the machine's load falls on both sides alike
            runs: dict[str, list[dict]] = {"this": [], "against": []}
            for _ in range(args.rounds):
                for side, checkout in (("against", args.against), ("this", None)):
                    runs[side].append(measure(model, texts, args, checkout))
                    print(json.dumps(runs[side][-1]), flush=True)
            medians = {side: statistics.median(r["requests_per_s"] for r in rows) for side, rows in runs.items()}
            summary = {"rounds": runs, "median_requests_per_s": medians,
                       "ratio": round(medians["this"] / medians["against"], 3)}
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
