"""Offline evaluation of a Parquet log larger than memory: rows/s and peak RSS of the streamed path.

    PYTHONPATH=. python benchmarks/bench_ope_scale.py --rows 20000000            # writes /tmp/bk-ope-scale-20000000
    PYTHONPATH=. python benchmarks/bench_ope_scale.py --rows 100000000 --dir /big/disk/log

Generates (once; reused when present) a folder of Parquet partitions of 1,000,000 rows each: K=10 arms,
5 context features, a softmax behaviour policy, click rewards. Then each workload runs in its own
subprocess, which reports its wall time and peak RSS (``VmHWM``): IPS + SNIPS + DR (5-fold ridge
fitted from streamed statistics over all rows) without resamples, the same with the ridge fitted on the
first --model-rows rows (``model_rows``: the fit pass reads only those), the same with --bootstrap
resamples, and, as the reference, IPS + SNIPS + DR in memory on the first --memory-rows rows. Three floors:
one pass that only decodes the files' columns to numpy, two such passes, and two streamed passes that
read and validate every chunk (what DR with the model fitted on all rows does before any arithmetic: it
reads the log twice). Each workload also reports its CPU
time (every thread, interpreter start and imports included) and the rows/s that work would reach spread
perfectly over the machine's cores: a ceiling that holds whatever the load. Targets: >= 5M rows/s and a
peak RSS under 2 GB for the point estimates. Last (``--no-spark`` skips it), IPS + SNIPS + DR in Spark ``local[2]``
(``banditkit.ope.spark``, the ``banditkit[spark]`` extra and Java 17), its rows/s beside the local engine's and its
fixed start-up cost (the JVM, the Python workers) timed apart.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROWS_PER_FILE = 1_000_000
N_ARMS, N_FEATURES = 10, 5


def write_log(folder: Path, n_rows: int, seed: int = 0) -> None:
    """A folder of Parquet partitions ``date=D/part-0.parquet``; each file from its own seeded stream."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    theta = np.random.default_rng(seed).normal(size=(N_FEATURES, N_ARMS))
    for index, start in enumerate(range(0, n_rows, ROWS_PER_FILE)):
        rows = min(ROWS_PER_FILE, n_rows - start)
        rng = np.random.default_rng([seed, index])
        contexts = rng.normal(size=(rows, N_FEATURES)).astype(np.float32)
        scores = np.exp(contexts @ theta * 0.5)
        behaviour = scores / scores.sum(axis=1, keepdims=True)
        arms = (behaviour.cumsum(axis=1) < rng.random((rows, 1))).sum(axis=1).clip(0, N_ARMS - 1)
        propensity = behaviour[np.arange(rows), arms]
        reward = (rng.random(rows) < 1 / (1 + np.exp(1.0 - contexts[:, 0] * theta[0, arms]))).astype(np.float64)
        columns = {"arm": arms.astype(np.int64), "reward": reward, "propensity": propensity}
        columns |= {f"x{j}": contexts[:, j].astype(np.float64) for j in range(N_FEATURES)}
        partition = folder / f"date={index:05d}"
        partition.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), partition / "part-0.parquet")
    (folder / "_SUCCESS").write_text(str(n_rows))


def cpu_seconds() -> float:
    """CPU time of this process so far, every thread, user plus system: the work, whatever the machine's load."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss() -> int:
    """This process's peak resident set in bytes: VmHWM, which starts afresh at exec.

    (``ru_maxrss`` does not: on Linux it keeps the parent's resident set at the fork.)
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status: the peak RSS is measured on Linux")


def child(
    path: str, mode: str, n_bootstrap: int, chunk_rows: int, memory_rows: int, names: list[str], extra: int
) -> None:
    """Run one workload in this process and print its timing and peak RSS as JSON.

    ``extra``: the passes of a ``read`` floor, the ``model_rows`` of a ``stream`` workload (0: all rows).
    """
    import banditkit as bk

    target = np.full((1, N_ARMS), 1.0 / N_ARMS)
    start = time.perf_counter()
    if mode == "read":  # the floor: decode every column of every file to numpy, nothing else, `extra` times
        import pyarrow.parquet as pq

        from banditkit.ope._io import parquet_files

        n_rows = 0
        for _ in range(extra):
            n_rows = 0
            for file in parquet_files(Path(path)):
                for batch in pq.ParquetFile(file).iter_batches(batch_size=chunk_rows):
                    n_rows += sum(0 * column.to_numpy().shape[0] for column in batch.columns) + batch.num_rows
        wall = time.perf_counter() - start
        peak = peak_rss()
        print(json.dumps({"wall": wall, "peak": peak, "rows": n_rows, "cpu": cpu_seconds()}))
        return
    if mode == "validate":  # the floor of a streamed pass: read and validate every chunk, `extra` times
        from banditkit.ope import streaming

        layout = streaming.scan_layout(Path(path), drop_unrewarded=False)
        for _ in range(extra):
            n_rows = sum(chunk.n_rows for _, chunk in streaming.chunks(layout, chunk_rows, False))
        wall = time.perf_counter() - start
        print(json.dumps({"wall": wall, "peak": peak_rss(), "rows": n_rows, "cpu": cpu_seconds()}))
        return
    if mode == "spark":
        spark_child(path, n_bootstrap, chunk_rows, names, target)
        return
    if mode == "memory":
        import pyarrow as pa
        import pyarrow.parquet as pq

        from banditkit.ope._io import parquet_files

        files = parquet_files(Path(path))[: max(1, memory_rows // ROWS_PER_FILE)]
        table = pa.concat_tables([pq.read_table(file) for file in files])
        report = bk.ope.evaluate(table, target, names, n_bootstrap=n_bootstrap)
    else:
        model_rows = extra or None
        report = bk.ope.evaluate(
            path, target, names, n_bootstrap=n_bootstrap, chunk_rows=chunk_rows, model_rows=model_rows
        )
    wall = time.perf_counter() - start
    peak = peak_rss()
    values = {name: report[name].value for name in report}
    result = {"wall": wall, "peak": peak, "rows": report["ips"].n_rows, "values": values, "cpu": cpu_seconds()}
    print(json.dumps(result))


def spark_child(path: str, n_bootstrap: int, chunk_rows: int, names: list[str], target: np.ndarray) -> None:
    """The same evaluation in Spark ``local[2]``: its fixed start-up cost timed apart from the evaluation.

    Start-up: the session (the JVM) and a first evaluation of 10,000 rows (the Python workers starting and
    importing banditkit); then the timed evaluation of the whole log. The peak RSS is the driver's Python
    process only (the JVM and the workers are processes of their own), so it is not reported.
    """
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    from banditkit.ope import spark

    start = time.perf_counter()
    session = spark.session("local[2]")
    session.sparkContext.setLogLevel("ERROR")
    started = time.perf_counter() - start
    small = Path(tempfile.mkdtemp()) / "warm-up.parquet"
    pq.write_table(pa.table(pq.read_table(next(Path(path).rglob("*.parquet"))).slice(0, 10_000)), small)
    start = time.perf_counter()
    spark.evaluate(small, target, names, spark=session, n_bootstrap=n_bootstrap, chunk_rows=chunk_rows)
    warm_up = time.perf_counter() - start
    start = time.perf_counter()
    report = spark.evaluate(path, target, names, spark=session, n_bootstrap=n_bootstrap, chunk_rows=chunk_rows)
    wall = time.perf_counter() - start
    values = {name: report[name].value for name in report}
    frame = session.read.option("recursiveFileLookup", "true").option("pathGlobFilter", "*.parquet").parquet(path)
    start = time.perf_counter()
    frame.mapInArrow(_count_rows, "rows long").collect()  # Spark's floor: every column to Python, once
    floor = time.perf_counter() - start
    result = {"wall": wall, "peak": math.nan, "rows": report["ips"].n_rows, "values": values, "cpu": math.nan}
    print(json.dumps(result | {"session": started, "warm_up": warm_up, "floor": floor, "source": report.source}))


def _count_rows(batches):
    import pyarrow as pa

    yield pa.RecordBatch.from_pydict({"rows": [sum(batch.num_rows for batch in batches)]})


def run(args: argparse.Namespace, mode: str, n_bootstrap: int, names: str, extra: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", mode, "--dir", str(args.dir), "--bootstrap", str(n_bootstrap)]
    command += ["--estimators", names, "--extra", str(extra)]
    command += ["--chunk-rows", str(args.chunk_rows), "--memory-rows", str(args.memory_rows)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="log folder (default /tmp/bk-ope-scale-ROWS)")
    parser.add_argument("--chunk-rows", type=int, default=262_144, help="rows per chunk (the streamed default)")
    parser.add_argument("--bootstrap", type=int, default=100, help="resamples of the interval workload (0: skip)")
    parser.add_argument("--memory-rows", type=int, default=5_000_000, help="rows of the in-memory reference")
    parser.add_argument(
        "--model-rows", type=int, default=1_000_000, help="model_rows of the sampled-model DR workload (0: skip)"
    )
    parser.add_argument("--estimators", default="ips,snips,dr", help=argparse.SUPPRESS)
    parser.add_argument("--extra", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=["stream", "memory", "read", "validate", "spark"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--spark", action=argparse.BooleanOptionalAction, default=True, help="IPS+SNIPS+DR in Spark local[2] too"
    )
    args = parser.parse_args()
    args.dir = args.dir or Path(f"/tmp/bk-ope-scale-{args.rows}")
    if args.child:
        names = args.estimators.split(",")
        child(str(args.dir), args.child, args.bootstrap, args.chunk_rows, args.memory_rows, names, args.extra)
        return
    if not (args.dir / "_SUCCESS").exists():
        start = time.perf_counter()
        write_log(args.dir, args.rows)
        print(f"wrote {args.rows:,} rows to {args.dir} in {time.perf_counter() - start:.1f} s")
    # (mode, resamples, estimators, extra: the floor's passes or the streamed model_rows)
    workloads = [
        ("read", 0, "", 1),
        ("read", 0, "", 2),
        ("validate", 0, "", 2),
        ("stream", 0, "ips,snips", 0),
        ("stream", 0, "ips,snips,dr", 0),
    ]
    workloads += [("stream", 0, "ips,snips,dr", args.model_rows)] if args.model_rows else []
    workloads += [("memory", 0, "ips,snips,dr", 0)] + (
        [("stream", args.bootstrap, "ips,snips,dr", 0)] if args.bootstrap else []
    )
    workloads += [("spark", 0, "ips,snips,dr", 0)] if args.spark else []
    load = os.getloadavg()[0]
    print(f"load average before the run {load:.1f} on {os.cpu_count()} cores; chunk_rows {args.chunk_rows:,}")
    cores = os.cpu_count() or 1
    print(
        f"| workload | rows | wall | rows/s | CPU | rows/s if the CPU work shared {cores} cores perfectly "
        "| peak RSS | target |\n|---|---|---|---|---|---|---|---|"
    )
    spark_notes: list[str] = []
    for mode, n_bootstrap, names, extra in workloads:
        result = run(args, mode, n_bootstrap, names or "ips", extra)
        label = names.upper().replace(",", "+")
        engine = {"stream": "streamed", "memory": "in memory", "spark": "in Spark local[2]"}.get(mode, "")
        what = (
            f"floor: read every column to numpy, {'one pass' if extra == 1 else f'{extra} passes'}"
            if mode == "read"
            else "floor: read and validate every chunk (streaming.chunks), 2 passes"
            if mode == "validate"
            else f"{label} {engine}, {n_bootstrap} resamples"
        )
        if mode == "stream" and "dr" in names:
            what += f", model on the first {extra:,} rows" if extra else ", model on all rows"
        target = ">= 5M rows/s, < 2 GB" if (mode, n_bootstrap, names) == ("stream", 0, "ips,snips,dr") else ""
        peak = "-" if math.isnan(result["peak"]) else f"{result['peak'] / 2**30:.2f} GB"
        cpu = "-" if math.isnan(result["cpu"]) else f"{result['cpu']:.1f} s"
        ceiling = "-" if math.isnan(result["cpu"]) else f"{result['rows'] / (result['cpu'] / cores) / 1e6:.2f} M"
        print(
            f"| {what} | {result['rows']:,} | {result['wall']:.1f} s | {result['rows'] / result['wall'] / 1e6:.2f} M "
            f"| {cpu} | {ceiling} | {peak} | {target} |",
            flush=True,
        )
        if mode == "spark":
            spark_notes.append(
                f"Spark's fixed start-up, not in the wall above: session (JVM) {result['session']:.1f} s, first "
                f"evaluation of 10,000 rows (Python workers start) {result['warm_up']:.1f} s; {result['source']}; "
                f"Spark's floor, every column from the JVM to Python once (Arrow): {result['floor']:.1f} s, "
                f"{result['rows'] / result['floor'] / 1e6:.2f} M rows/s"
            )
    for note in spark_notes:
        print(note)


if __name__ == "__main__":
    main()
