"""Operating a long run as its users do: no terminal, a stale Ray on the machine, a log to read."""

import contextlib
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

import psutil
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from embednv.embed.progress import ActorReport, Progress, format_seconds
from embednv.sample_corpus import write_sample_corpus

EMBEDNV = [sys.executable, "-m", "embednv.cli"]
PROGRESS = re.compile(r"^embednv: ([\d,]+)/([\d,]+) rows embedded .*, ([\d,]+)/([\d,]+) shards written \| (.*)$")


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "RAY_USAGE_STATS_ENABLED": "0", **extra}


def closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections are refused at once
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def private_ray_tmp():
    """A Ray temp dir of this test's own (short: Ray's socket paths must fit 107 bytes)."""
    path = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    yield path
    subprocess.run(["rm", "-rf", path])


MARKER = "Zyxquorbal"  # in the long note's text: must never reach the log


@pytest.fixture(scope="module")
def long_note_run(tmp_path_factory):
    """One CLI run on the default (Ray) executor, with two things users meet: an address file left by an
    earlier `ray start` whose head is gone, and one note of ~60 model inputs, seconds of work alone."""
    root = tmp_path_factory.mktemp("long-note")
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    with open(os.path.join(ray_tmp, "ray_current_cluster"), "w") as f:
        f.write(f"127.0.0.1:{closed_port()}")
    text = " ".join(f"Day {i}: {MARKER} walked {i % 7} blocks, no chest pain or dyspnea." for i in range(300))
    pq.write_table(pa.table({"note_id": [1], "text": [text]}), root / "notes.parquet")
    # 128-token windows in batches of 8: ~60 windows, a progress callback per batch, reported every 0.1 s.
    args = ["--model", "minilm", "--max-tokens", "128", "--batch-tokens", "1024", "--log-every", "0.1"]
    try:
        result = subprocess.run(
            [*EMBEDNV, "embed", str(root / "notes.parquet"), "--out", str(root / "out"), *args],
            env=clean_env(RAY_TMPDIR=ray_tmp),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        subprocess.run(["rm", "-rf", ray_tmp])
    return result, root / "out"


def test_a_stale_ray_address_file_does_not_hang_the_run(long_note_run):
    result, _ = long_note_run
    assert result.returncode == 0, result.stderr
    assert "embedded 1 of 1 notes (0 errors)" in result.stdout and "tokens/s" in result.stdout  # the default executor
    assert "Failed to connect to GCS" not in result.stderr


# Starts embednv's private Ray, then reports what its raylet and GCS were started with and run.
PRIVATE_RAY_REPORT = """
import base64, json, os, psutil, ray
from embednv.embed.ray_job import init_ray
init_ray()
report = {"driver_malloc_conf": os.environ.get("MALLOC_CONF")}
for proc in psutil.Process().children(recursive=True):
    if proc.name() in ("raylet", "gcs_server"):
        report[proc.name()] = {
            "malloc_conf": proc.environ().get("MALLOC_CONF"),
            "threads": sorted({open(f"/proc/{proc.pid}/task/{t.id}/comm").read().strip() for t in proc.threads()}),
        }
    if proc.name() == "gcs_server":  # the GCS hands its system config to every raylet and worker
        config = next(a for a in proc.cmdline() if a.startswith("--config_list="))
        report["system_config"] = json.loads(base64.b64decode(config.split("=", 1)[1]))
ray.shutdown()
print(json.dumps(report))
"""


def test_the_private_ray_keeps_no_history_that_grows_with_time(private_ray_tmp):
    """Task events capped, metrics off, and jemalloc in raylet and GCS returning freed pages (docs/reliability.md)."""
    from embednv.embed.private_ray import DAEMON_MALLOC_CONF

    result = subprocess.run(
        [sys.executable, "-c", PRIVATE_RAY_REPORT],
        env={k: v for k, v in clean_env(RAY_TMPDIR=private_ray_tmp).items() if k != "MALLOC_CONF"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["driver_malloc_conf"] is None  # set only while ray.init starts the daemons
    for daemon in ("raylet", "gcs_server"):
        assert report[daemon]["malloc_conf"] == DAEMON_MALLOC_CONF
        assert "jemalloc_bg_thd" in report[daemon]["threads"], report[daemon]["threads"]  # jemalloc read it
    assert report["system_config"]["enable_metrics_collection"] is False
    assert report["system_config"]["task_events_max_num_task_in_gcs"] == 100


# Starts embednv's private Ray and one worker, then waits: the test reads its sockets meanwhile.
PRIVATE_RAY_RUNNING = """
import sys, ray
from embednv.embed.ray_job import init_ray
init_ray()
ray.get(ray.remote(lambda: 0).remote())  # a worker process, with a gRPC server of its own
print("ready", flush=True)
sys.stdin.readline()
ray.shutdown()
"""
RAY_LISTENERS = {"gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"}


def listening_sockets(root: psutil.Process) -> list[tuple[str, str, int]]:
    """(process name, ip, port) of every listening TCP socket of `root` and its descendants."""
    found = []
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            name = proc.name()
            found += [(name, c.laddr.ip, c.laddr.port) for c in proc.net_connections("tcp") if c.status == "LISTEN"]
    return found


def assert_loopback_only(root: psutil.Process) -> None:
    deadline = time.monotonic() + 30  # the agents may bind a moment after ray.init returns
    while True:
        sockets = listening_sockets(root)
        names = {name for name, _, _ in sockets}
        if RAY_LISTENERS <= names and any(n.startswith("ray::") for n in names - RAY_LISTENERS):
            break
        assert time.monotonic() < deadline, f"not every Ray process listens yet: {sorted(names)}"
        time.sleep(0.5)
    exposed = [s for s in sockets if not is_loopback(s[1])]
    assert exposed == [], f"reachable from the network: {exposed}"


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1, an IPv6 socket of 127.0.0.1
    return (mapped or address).is_loopback


def test_the_private_ray_listens_on_loopback_only(private_ray_tmp):
    """GCS, raylet, agents, metrics servers, driver and workers: nothing reachable from another machine."""
    driver = subprocess.Popen(
        [sys.executable, "-c", PRIVATE_RAY_RUNNING],
        env=clean_env(RAY_TMPDIR=private_ray_tmp),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert driver.stdout.readline().strip() == "ready", driver.communicate(timeout=60)[1]
        assert_loopback_only(psutil.Process(driver.pid))
    finally:
        driver.communicate("\n", timeout=120)


def test_the_test_suites_ray_listens_on_loopback_only(ray_local):
    ray_local.get(ray_local.remote(lambda: 0).remote())
    assert_loopback_only(psutil.Process())


def test_an_unreachable_ray_address_fails_fast_with_one_line(tmp_path):
    notes = tmp_path / "notes.parquet"
    pq.write_table(pa.table({"note_id": [1], "text": ["Cough."]}), notes)
    address = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    result = subprocess.run(
        [*EMBEDNV, "embed", str(notes), "--out", str(tmp_path / "out"), "--model", "minilm"],
        env=clean_env(RAY_ADDRESS=address, EMBEDNV_RAY_CONNECT_TIMEOUT_S="2.5"),  # the default 30 s, shortened
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert time.monotonic() - started < 30
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and address in errors[0] and "did not answer within 2.5s" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """A real run as `ray job logs` sees it: stderr to a file, no terminal, progress every second.

    One CSV file is one read task for the whole file: before windows streamed to the driver,
    every shard of it appeared at once at the very end.
    """
    root = tmp_path_factory.mktemp("logged")
    write_sample_corpus(str(root / "notes.parquet"), 100, seed=3)
    pacsv.write_csv(pq.read_table(root / "notes.parquet").select(["note_id", "text"]), root / "notes.csv")
    log = root / "stderr.log"
    with open(log, "w") as err:
        result = subprocess.run(
            [
                *EMBEDNV,
                "embed",
                str(root / "notes.csv"),
                "--out",
                str(root / "out"),
                "--model",
                "minilm",
                "--max-tokens",
                "128",
                "--rows-per-shard",
                "10",
                "--window-rows",
                "10",
                "--log-every",
                "1",
            ],
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=600,
        )
    assert result.returncode == 0, log.read_text()
    return log.read_text().splitlines(), result.stdout


RAY_LEVEL_NOTICE = re.compile(r"\] logging\.cc:\d+: Set ray log level from environment variable RAY_BACKEND_LOG_LEVEL")


def test_the_log_says_what_runs_then_counts_up_to_the_rows_in(logged_run):
    everything, stdout = logged_run
    lines = [line for line in everything if line.startswith("embednv: ")]  # Ray's one line: the test below
    assert re.match(
        r"^embednv: 100 rows in 1 file -> 10 shards \(10 to write, 100 rows\) \| model minilm \(384-d\) on cpu, "
        r"float32 \| 1 embedding actor$",
        lines[0],
    ), lines[0]
    assert any(re.match(r"^embednv: model loaded in \d+\.\ds \(cpu on .+\)$", line) for line in lines), lines
    counts = [(int(m[1].replace(",", "")), int(m[3])) for m in map(PROGRESS.match, lines) if m]
    assert len(counts) >= 3
    assert counts == sorted(counts), "progress went backwards"
    assert counts[-1] == (100, 10)
    rows_seen = {rows for rows, _ in counts}
    assert len(rows_seen - {0, 100}) >= 2, f"rows arrived all at once, not window by window: {counts}"
    shards_seen = {shards for _, shards in counts}
    assert len(shards_seen - {0, 10}) >= 2, f"shards were written all at once at the end: {counts}"
    rates = [m[5] for m in map(PROGRESS.match, lines) if m and m[1] != "0"]
    assert all(re.search(r"[\d.,]+ notes/s \| [\d,]+ tokens/s \| ETA \w+", r) for r in rates), rates
    assert "embedded 100 of 100 notes (0 errors)" in stdout


WINDOWS_LINE = re.compile(
    r"^embednv: (\d+)/1 rows embedded .* \| ([\d,]+)/([\d,]+) windows of the rows in progress \| "
)


def test_a_long_note_counts_its_windows_in_the_log_before_its_row_is_back(long_note_run):
    """One note of hundreds of model inputs takes seconds alone: the log shows it moving, not 'waiting'."""
    result, out = long_note_run
    assert result.returncode == 0, result.stderr
    counts = [
        (int(m[1]), int(m[2].replace(",", "")), int(m[3].replace(",", "")))
        for m in map(WINDOWS_LINE.match, result.stderr.splitlines())
        if m
    ]
    assert counts, result.stderr
    n_chunks = pq.read_table(out).column("n_chunks").to_pylist()
    assert {total for _, _, total in counts} == set(n_chunks) and n_chunks[0] > 50
    assert all(rows == 0 and 0 < done < total for rows, done, total in counts), counts  # before the row is back
    assert [done for _, done, _ in counts] == sorted(done for _, done, _ in counts), "windows went backwards"
    assert MARKER not in result.stderr + result.stdout


def test_a_healthy_run_prints_no_ray_warning_or_error(logged_run):
    lines, _ = logged_run
    # Only embednv's lines, and Ray's one notice that its C++ core logs fatal errors only: not the
    # "constructor arguments in the object store" error line every actor caused (private_ray.quiet_core_log),
    # nor a library's progress bar.
    noise = [line for line in lines if not line.startswith("embednv: ")]
    assert len(noise) <= 1 and all(RAY_LEVEL_NOTICE.search(line) for line in noise), noise


def test_progress_line_rates_and_eta_without_ray():
    events = [[("model_loaded", 2.5, "cpu on host")]]
    with Progress(
        1000, 10, shards_done=2, log_every=60, interactive=False, poll_events=lambda: events.pop() if events else []
    ) as p:
        assert "waiting for the first rows" in p.line()
        time.sleep(1.2)  # the reporter thread reads the event
        p.add(rows=250, tokens=5000, shards_written=1)
        line = p.line()
    assert line.startswith("250/1,000 rows embedded (25%), 3/10 shards written | ")
    assert re.search(r"notes/s \| [\d,]+ tokens/s \| ETA \d+s$", line), line
    assert [format_seconds(s) for s in (5, 125, 3 * 3600 + 7 * 60)] == ["5s", "2m05s", "3h07m"]


def test_an_actor_reports_the_windows_of_a_long_call_only_without_ray():
    sent = []
    report = ActorReport(sent.append, actor="a", every=3600)
    for done in (0, 4, 8, 10):
        report.windows(done, 10)
    assert sent == []  # a call shorter than `every` sends nothing, not even its end
    report = ActorReport(sent.append, actor="a", every=0)
    for done in (0, 4, 8, 10):
        report.windows(done, 10)
    assert sent == [("windows", 4, 10, "a"), ("windows", 8, 10, "a"), ("windows", 10, 10, "a")]
    ActorReport(lambda event: 1 / 0, actor="a", every=0).windows(1, 2)  # a lost message never stops the actor


def test_progress_line_counts_the_windows_of_the_rows_in_progress_without_ray():
    events = [[("windows", 4, 10, "actor a"), ("windows", 2, 5, "actor b")]]

    def line_when(ready, p: Progress) -> str:
        deadline = time.monotonic() + 10  # the reporter thread reads the events about every 0.05 s
        while not ready(line := p.line()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return line

    with Progress(1, 1, log_every=0.05, interactive=False, poll_events=lambda: events.pop() if events else []) as p:
        line = line_when(lambda line: "windows" in line, p)
        assert line.startswith(
            "0/1 rows embedded (0%), 0/1 shards written | 6/15 windows of the rows in progress | "
        ), line
        events.append([("windows", 10, 10, "actor a")])  # a's call is over
        assert "| 2/5 windows of the rows in progress | waiting" in line_when(lambda line: "2/5" in line, p)
        events.append([("windows", 5, 5, "actor b")])
        assert "windows" not in line_when(lambda line: "windows" not in line, p)
        p.add(rows=1, tokens=120, shards_written=1)
        assert p.line().startswith("1/1 rows embedded (100%), 1/1 shards written | ") and "windows" not in p.line()


def test_sample_corpus_without_extension_writes_what_embed_reads(tmp_path):
    result = subprocess.run(
        [*EMBEDNV, "sample-corpus", str(tmp_path / "notes"), "--n", "5"], capture_output=True, text=True
    )
    assert result.returncode == 0 and (tmp_path / "notes.parquet").is_file()
    assert "notes.parquet" in result.stdout
    assert pq.read_table(tmp_path / "notes.parquet").num_rows == 5
