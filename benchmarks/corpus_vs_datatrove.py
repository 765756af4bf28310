"""Our ``ingest,segment`` against datatrove's web pipeline on the same crawl, both as whole processes.

    python benchmarks/corpus_vs_datatrove.py                     # 8 files x each crawl's pages, median of 3
    python benchmarks/corpus_vs_datatrove.py --files 2 --runs 1  # smoke check
    python benchmarks/corpus_vs_datatrove.py --warc /work/shared/data/realweb-eval.warc.gz  # one crawl only

Crawls (``--warc``, repeatable): by default the shared Python docs crawl (the corpus the corpus stages were
tuned on; ``data/sample``'s WARC when that is absent) and the shared ``realweb-eval`` crawl (953 real pages of
news, blogs, shops and forums in many languages), each compared on its own, with its own ratio. Inputs per
crawl: ``--files`` WARC.gz files, each holding every HTML page of the crawl once, with its own URLs and 25 % of
the words of 4+ letters in text nodes replaced by other words of the same page (seeded by file and page, so a
page keeps its language): every page is distinct, so neither side's dedup or caches see copies. Every response
carries ``WARC-Identified-Payload-Type: text/html``: datatrove's ``WarcReader`` keeps only records whose
identified type is HTML. Built under ``--work`` and reused.

- ours: ``spark-submit --master local[2] jobs/augment.py --config conf/local.yaml --stages ingest,segment`` on
  fresh tables (language id, PII masking, the paper's and Gopher filters, decontamination, exact and near dedup,
  Delta writes);
- datatrove 0.10.1: ``WarcReader -> Trafilatura -> GopherRepetitionFilter -> GopherQualityFilter`` under
  ``LocalPipelineExecutor`` (2 tasks x 2 workers), in its own virtual environment ``--venv`` (made once, e.g.
  ``--venv /work/venvs/datatrove``:
  ``python3.11 -m venv``; ``pip install datatrove==0.10.1 trafilatura==1.11.* lxml_html_clean``, WarcReader's
  ``faust-cchardet python-magic warcio`` and the Gopher filters' ``spacy``; trafilatura 1.11 needs
  lxml_html_clean beside lxml 6).

Each side runs ``--runs`` times, alternating, timed by wall clock from process start to exit (JVM start
included); pages/s is the inputs' HTML pages over the median time. Target (issues 15, 23): ours >= 3x
datatrove's, on every crawl.
The CPU seconds of each run's process tree are printed too: on a shared, loaded machine they compare the work
done when wall clock mostly measures the neighbours.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.corpus_throughput import _LONG_WORD, _TEXT_NODE, perturb  # noqa: E402

SHARED_WARC = Path("/work/shared/data/python-3.11-docs.warc.gz")
REALWEB_WARC = Path("/work/shared/data/realweb-eval.warc.gz")
SAMPLE_WARC = ROOT / "data/sample/python-docs-sample.warc.gz"
VENV = Path("/work/cache/datatrove-venv")
# The issue's three, then what WarcReader (datatrove's "io" extra) and the Gopher filters' English word tokenizer
# (spacy) import
REQUIREMENTS = [
    "datatrove==0.10.1",
    "trafilatura==1.11.*",
    "lxml_html_clean",
    "faust-cchardet",
    "python-magic",
    "warcio",
    "spacy",
]
RATE = 0.25  # share of long words replaced: every page distinct, its text still in its language
DATATROVE = """
import sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
from datatrove.pipeline.readers import WarcReader

if __name__ == "__main__":
    data, logs = sys.argv[1:3]
    reader = WarcReader(data, glob_pattern="*.warc.gz")
    pipeline = [reader, Trafilatura(), GopherRepetitionFilter(), GopherQualityFilter()]
    LocalPipelineExecutor(pipeline=pipeline, tasks=2, workers=2, logging_dir=logs).run()
"""


def html_pages(warc: Path) -> list[tuple[str, bytes]]:
    """(url, body) of the 200 HTML responses of ``warc``."""
    pages = []
    with open(warc, "rb") as f:
        for record in ArchiveIterator(f):
            http = record.http_headers
            if (
                record.rec_type == "response"
                and http is not None
                and http.get_statuscode() == "200"
                and (http.get_header("Content-Type") or "").startswith("text/html")
            ):
                pages.append((record.rec_headers.get_header("WARC-Target-URI"), record.content_stream().read()))
    return pages


def build_inputs(warc: Path, files: int, work: Path) -> tuple[Path, int]:
    """The input folder (reused when its manifest is there) and its page count."""
    folder = work / f"vs-datatrove-{warc.stem}-{files}"
    manifest = work / f"{folder.name}.json"  # beside the folder: a .json inside would be read as input
    if manifest.is_file():
        return folder, json.loads(manifest.read_text())["pages"]
    originals = [(url, body.decode("utf-8", "replace")) for url, body in html_pages(warc)]
    # Each page's own words: a German page stays German for both sides' language filters.
    vocabs = [
        sorted({w for node in _TEXT_NODE.findall(html) for w in _LONG_WORD.findall(node)}) or ["word"]
        for _, html in originals
    ]
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for n in range(files):
        with open(folder / f"part-{n:05d}.warc.gz", "wb") as out:
            writer = WARCWriter(out, gzip=True)
            for j, (url, page) in enumerate(originals):
                html = perturb(page, RATE, random.Random(f"{n}/{j}"), vocabs[j])
                headers = StatusAndHeaders(
                    "200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1"
                )
                record = writer.create_warc_record(
                    f"https://mirror{n}.example.org/{url.split('://', 1)[-1]}",
                    "response",
                    payload=io.BytesIO(html.encode("utf-8")),
                    http_headers=headers,
                    warc_headers_dict={"WARC-Identified-Payload-Type": "text/html"},
                )
                writer.write_record(record)
    pages = files * len(originals)
    manifest.write_text(json.dumps({"pages": pages}))
    return folder, pages


def ensure_venv(venv: Path) -> Path:
    """datatrove's Python, the virtual environment made on first use."""
    python = venv / "bin/python"
    if not python.is_file():
        subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    return python


def timed(cmd: list[str], env: dict, label: str) -> float:
    """Wall seconds of ``cmd``; its process tree's CPU seconds go to ``CPU[label]``.

    The tree is sampled from /proc every ``_SAMPLE_S``: datatrove's workers come from a forkserver and Spark's
    Python workers from a daemon, whose exits ``RUSAGE_CHILDREN`` never sees. A process's time after its last
    sample (at most ``_SAMPLE_S`` of it) is missed.
    """
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        job = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        ticks: dict[int, int] = {}
        while job.poll() is None:
            ticks.update(_tree_ticks(job.pid))
            time.sleep(_SAMPLE_S)
        seconds = time.perf_counter() - start
        CPU[label] = sum(ticks.values()) / os.sysconf("SC_CLK_TCK")
        if job.returncode:
            err.seek(0)
            sys.exit(f"{label} failed ({job.returncode}):\n{err.read()[-3000:]}")
    return seconds


def _tree_ticks(root: int) -> dict[int, int]:
    """Own user + system clock ticks of ``root`` and its descendants now alive, by pid."""
    parent, ticks = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        parent[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])  # utime, stime
    tree, todo = {root}, [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    while todo:
        for child in children.get(todo.pop(), []):
            tree.add(child)
            todo.append(child)
    return {pid: ticks[pid] for pid in tree if pid in ticks}


_SAMPLE_S = 0.2
CPU: dict[str, float] = {}


def run_ours(inputs: Path) -> tuple[float, dict]:
    root = tempfile.mkdtemp(prefix="vs-datatrove-ours-")
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",  # spark-submit finds Spark through python3
        "PYTHONPATH": str(ROOT),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    cmd = [
        str(bin_dir / "spark-submit"),
        "--master",
        "local[2]",
        "jobs/augment.py",
        "--config",
        "conf/local.yaml",
        "--stages",
        "ingest,segment",
        "--set",
        f"input.corpus={inputs}",
        "--set",
        f"storage.root={root}/tables",
    ]
    try:
        seconds = timed(cmd, env, "ours")
        from deltalake import DeltaTable

        segments = DeltaTable(f"{root}/tables/segments").to_pandas(columns=["doc_id", "status"])
        docs = DeltaTable(f"{root}/tables/documents").to_pandas(columns=["status"])
        counts = {
            "documents_ok": int((docs["status"] == "ok").sum()),
            "segments": len(segments),
            "segments_ok": int((segments["status"] == "ok").sum()),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return seconds, counts


def run_datatrove(python: Path, inputs: Path) -> tuple[float, dict]:
    work = Path(tempfile.mkdtemp(prefix="vs-datatrove-dt-"))
    script = work / "pipeline.py"
    script.write_text(DATATROVE)
    try:
        seconds = timed([str(python), str(script), str(inputs), str(work / "logs")], dict(os.environ), "datatrove")
        stats = json.loads((work / "logs/stats.json").read_text())
        counts = {s["name"]: s["stats"].get("documents", {}).get("total", s["stats"]) for s in stats}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return seconds, counts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warc", type=Path, action="append", help="a crawl to compare on (repeatable)")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "work/bench")
    parser.add_argument("--venv", type=Path, default=VENV)
    args = parser.parse_args(argv)
    crawls = args.warc or [SHARED_WARC if SHARED_WARC.is_file() else SAMPLE_WARC, REALWEB_WARC]
    python = ensure_venv(args.venv)
    results = {warc.name: compare(warc, args.files, args.runs, args.work, python) for warc in crawls if warc.is_file()}
    for name, r in results.items():
        print(
            f"{name}: ours / datatrove = {r['ratio']:.2f}x wall clock, {r['cpu_ratio']:.2f}x CPU seconds   "
            f"target >= 3x: {'met' if r['ratio'] >= 3 else 'MISSED'}"
        )
    return results


def compare(warc: Path, files: int, runs: int, work: Path, python: Path) -> dict:
    """Both sides ``runs`` times on ``files`` perturbed copies of ``warc``: pages/s, CPU seconds and their ratios."""
    inputs, pages = build_inputs(warc, files, work)
    print(f"{warc.name}: {pages:,} distinct HTML pages in {files} WARC.gz files under {inputs}")
    seconds: dict[str, list[float]] = {"ours": [], "datatrove": []}
    cpu: dict[str, list[float]] = {"ours": [], "datatrove": []}
    for n in range(runs):
        for name in ("ours", "datatrove"):  # alternating: load drifts hit both sides alike
            took, counts = run_ours(inputs) if name == "ours" else run_datatrove(python, inputs)
            seconds[name].append(took)
            cpu[name].append(CPU[name])
            print(
                f"  run {n + 1} {name:<9} {took:7.1f}s wall {CPU[name]:7.1f}s CPU  {pages / took:7.1f} pages/s  "
                f"{json.dumps(counts)}"
            )
    rate = {name: pages / statistics.median(times) for name, times in seconds.items()}
    print(f"  ours (spark-submit local[2], ingest+segment): {rate['ours']:.1f} pages/s (median of {runs})")
    print(f"  datatrove 0.10.1 (2 tasks x 2 workers):       {rate['datatrove']:.1f} pages/s (median of {runs})")
    cpu_ratio = statistics.median(cpu["datatrove"]) / statistics.median(cpu["ours"])
    print(f"  CPU seconds per page: datatrove / ours = {cpu_ratio:.2f}x")
    ratio = rate["ours"] / rate["datatrove"]
    print(f"  ratio ours / datatrove: {ratio:.2f}x   target >= 3x: {'met' if ratio >= 3 else 'MISSED'}")
    return {"pages": pages, "seconds": seconds, "cpu": cpu, "pages_per_s": rate, "ratio": ratio, "cpu_ratio": cpu_ratio}


if __name__ == "__main__":
    main()
