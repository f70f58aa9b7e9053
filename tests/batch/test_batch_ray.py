"""``bertrt batch --ray`` and ``bertrt.ray.Predictor`` on a local Ray (2 CPUs, no dashboard, no network):
the same files as the single-process run."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

import bertrt
import bertrt.batch
import bertrt.ray
from bertrt.batch import sink
from bertrt.errors import InputError

from .data import assert_same, make_texts, write_rows

NER = "token-classification"
OPTIONS = {"aggregation_strategy": "first"}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def job(tiny_bundle, tmp_path_factory):
    """(bundle, input file, texts, the single-process output folder)."""
    bundle = tiny_bundle("bert", NER)
    texts = make_texts(240)
    folder = tmp_path_factory.mktemp("ray-job")
    source = write_rows([{"id": i, "text": t} for i, t in enumerate(texts)], folder / "in.jsonl")
    local = folder / "local"
    bertrt.batch.run(bundle, source, local, task_options=OPTIONS, shard_size=40, workers=1, progress=False)
    return bundle, source, texts, local


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# (before the tests that start a local Ray: this module's Ray stays up until its end)
def test_ray_address_with_no_cluster_fails_fast_naming_it_before_writing(job, tmp_path):
    import time

    from bertrt.errors import BertrtError

    if ray.is_initialized():  # a Ray started in this process is joined whatever the address: end it first
        ray.shutdown()
    bundle, source, _, _ = job
    address = f"127.0.0.1:{_closed_port()}"
    out = tmp_path / "never"
    start = time.monotonic()
    with pytest.raises(BertrtError, match=rf"no Ray cluster answers at {address}"):
        bertrt.batch.run(bundle, source, out, task_options=OPTIONS, ray=address, progress=False)
    assert time.monotonic() - start < bertrt.ray.CONNECT_TIMEOUT_S + 5
    assert not out.exists()  # nothing written
    with pytest.raises(InputError, match="HOST:PORT"):
        bertrt.ray.check_reachable("no-port-here")


@pytest.mark.parametrize(  # shipping the bundle through the object store: the slow run
    "ship", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["shared-path", "object-store"]
)
def test_ray_run_writes_the_files_of_the_local_run(local_ray, job, tmp_path, ship):
    bundle, source, _, local = job
    out = tmp_path / "ray"
    summary = bertrt.batch.run(
        bundle,
        source,
        out,
        task_options=OPTIONS,
        shard_size=40,
        ray=True,
        workers=2,
        ship_bundle=ship,
        progress=False,
    )
    assert summary.complete and (summary.mode, summary.workers, summary.threads) == ("ray", 2, 1)
    names = sorted(p.name for p in local.glob("part-*"))
    assert sorted(p.name for p in out.glob("part-*")) == names
    for name in names:
        assert pq.read_table(out / name).equals(pq.read_table(local / name)), name
    manifest = json.loads((out / sink.MANIFEST).read_text())
    assert len({r["worker"] for r in manifest["shards"]["done"].values()}) == 2  # both actors worked
    assert manifest["job"] == json.loads((local / sink.MANIFEST).read_text())["job"]
    # resumable like the local run: a lost shard is redone, the others are skipped
    (out / names[1]).unlink()
    again = bertrt.batch.run(
        bundle, source, out, task_options=OPTIONS, shard_size=40, ray=True, progress=False
    )
    assert (again.shards_run, again.shards_skipped) == (1, len(names) - 1)
    assert pq.read_table(out / names[1]).equals(pq.read_table(local / names[1]))


def test_ray_run_stops_on_a_bad_row(local_ray, job, tmp_path):
    bundle, _, texts, _ = job
    rows = [{"id": i, "text": t} for i, t in enumerate(texts[:50])]
    rows[33]["text"] = None
    source = write_rows(rows, tmp_path / "bad.parquet")
    with pytest.raises(InputError, match=r"bad\.parquet row 33.*'text' is missing or null"):
        bertrt.batch.run(bundle, source, tmp_path / "out", shard_size=20, ray=True, workers=2, progress=False)


@pytest.mark.slow  # a Ray Data pipeline with an actor pool: the slow run
def test_predictor_in_a_users_read_map_write_pipeline(local_ray, job, tmp_path):
    bundle, _, texts, _ = job
    source = write_rows([{"id": i, "text": t} for i, t in enumerate(texts[:120])], tmp_path / "in.parquet")
    ds = ray.data.read_parquet(str(source)).repartition(4)  # blocks for both actors
    ds = ds.map_batches(
        bertrt.ray.Predictor,
        fn_constructor_kwargs={"bundle": str(bundle), "task_options": OPTIONS, "threads": 1},
        compute=ray.data.ActorPoolStrategy(size=2),
        num_cpus=0.5,  # two actors leave a CPU to the read and write tasks (all CPUs to actors: a stall)
        batch_size=16,
        batch_format="pyarrow",
    )
    ds.write_parquet(str(tmp_path / "out"))
    table = pa.concat_tables(pq.read_table(p) for p in sorted((tmp_path / "out").glob("*.parquet")))
    rows = sorted(table.to_pylist(), key=lambda r: r["id"])
    assert [r["id"] for r in rows] == list(range(120))
    assert table.schema.field("result").type == bertrt.batch.Predictor(bundle, OPTIONS).result_type
    expected = bertrt.pipeline(None, bundle)(texts[:120], **OPTIONS)
    for row, want in zip(rows, expected):
        assert_same(row["result"], want)


def test_an_actor_that_cannot_load_fails_the_run_naming_why(local_ray, tmp_path):
    from bertrt.batch.runner import Job
    from bertrt.errors import BertrtError

    job = Job(str(tmp_path / "no-bundle"), NER, {}, str(tmp_path / "out"), [])
    with pytest.raises(BertrtError, match=r"could not load the pipeline: BundleError: .*no-bundle"):
        bertrt.ray.run_shards(job, ["a", "b"], actors=2, on_done=print)
