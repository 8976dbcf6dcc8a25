"""Runs past one machine (engine/cluster.py, cluster_worker.py, cluster_jobs.py, cli_merge.py). On a local Ray
with 2 workers, certify, predict, radius decisions, attack curves, the transfer matrix, build-dataset and the
Ilyas pipeline's datasets equal the single-process run's; a worker killed mid-block (SIGKILL from outside)
costs no row and duplicates none; --shard slices are disjoint and cover the run, and merge joins them into
the single run's file or says what is duplicated, missing or mismatched."""

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import one_line_error

from robustlens.engine import cluster
from robustlens.engine.cli import main
from robustlens.engine.ilyas_experiment import (ConstructionSettings, ExperimentSettings, IlyasExperimentRequest,
                                               ilyas_experiment_job)
from robustlens.engine.jobs import CancelToken, Failed, Finished, Partial, run_job
from robustlens.engine.model_cache import ModelCache
from robustlens.engine.robustness import RobustnessRequest, cached_robustness_curves_job

MODEL = "fashion-mnist/noise-0.25"
COMMON = ["--model", MODEL, "--n", 200, "--batch", 200, "--max", 6, "--seed", 11, "--threads", 1]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def certify(capsys, out, *extra):
    return run(capsys, "certify", *COMMON, "--n0", 20, "--out", out, *extra)


def predict(capsys, out, *extra):
    return run(capsys, "predict", *COMMON, "--out", out, *extra)


def rows(path, columns):
    """The rows without the time column, as the file has them (order included)."""
    lines = Path(path).read_text().splitlines()
    assert lines[0].startswith("# robustlens ")
    return lines[0], [tuple(line.split("\t")[:columns]) for line in lines[2:]]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The single-process certify and predict outputs the Ray runs must equal."""
    folder = tmp_path_factory.mktemp("single")
    assert main([str(a) for a in ["certify", *COMMON, "--n0", 20, "--out", folder / "certify.tsv"]]) == 0
    assert main([str(a) for a in ["predict", *COMMON, "--out", folder / "predict.tsv"]]) == 0
    return folder / "certify.tsv", folder / "predict.tsv"


def test_certify_on_two_ray_workers_writes_the_single_process_rows(local_ray, single, tmp_path, capsys):
    out = tmp_path / "ray.tsv"
    code, text, err = certify(capsys, out, "--ray", "local", "--workers", 2, "--block", 2)
    assert code == 0, err
    assert "on 2 Ray workers" in text
    expected_settings, expected = rows(single[0], 5)
    settings, got = rows(out, 5)
    assert settings == expected_settings  # a Ray run is the same run: either one resumes the other
    assert got == expected and [int(r[0]) for r in got] == list(range(6))


def test_predict_on_two_ray_workers_writes_the_single_process_rows(local_ray, single, tmp_path, capsys):
    out = tmp_path / "ray.tsv"
    code, _, err = predict(capsys, out, "--ray", "local", "--workers", 2, "--block", 1)
    assert code == 0, err
    assert rows(out, 4) == rows(single[1], 4)


def _our_workers(ray) -> list[int]:
    """PIDs of this session's Ray workers: children of its raylet whose process title names BlockWorker."""
    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == raylet and _title(int(proc.name)).startswith(b"ray::BlockWorker"):
            found.append(int(proc.name))
    return found


def _title(pid: int) -> bytes:
    """The process title; Ray sets it to ray::BlockWorker.run while the worker runs a block."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return b""


def test_a_worker_killed_mid_block_is_replaced_and_no_row_is_lost_or_doubled(local_ray, tmp_path, capsys):
    slow = ["--n", 1000, "--batch", 1000, "--max", 4]
    expected = tmp_path / "single.tsv"
    code, _, err = certify(capsys, expected, *slow)
    assert code == 0, err
    killed: list[int] = []
    stop = threading.Event()

    def kill_one_worker_mid_block():
        workers, listed = [], 0.0
        while not stop.is_set() and not killed:
            if time.monotonic() - listed > 0.05:  # workers come and go; their titles change per block
                workers, listed = _our_workers(local_ray), time.monotonic()
            busy = [pid for pid in workers if _title(pid).startswith(b"ray::BlockWorker.run")]
            if busy:
                os.kill(busy[0], signal.SIGKILL)  # as the kernel's OOM killer or a lost node would
                killed.append(busy[0])
            time.sleep(0.001)

    for attempt in range(3):  # a machine fast enough to finish before the killer looks gets another run
        out = tmp_path / f"ray-{attempt}.tsv"
        killer = threading.Thread(target=kill_one_worker_mid_block, daemon=True)
        stop.clear()
        killer.start()
        try:
            code, _, err = certify(capsys, out, *slow, "--ray", "local", "--workers", 2, "--block", 1)
        finally:
            stop.set()
            killer.join()
        assert code == 0, err
        if killed:
            break
    assert killed, "no worker was seen running a block"
    _, got = rows(out, 5)
    assert got == rows(expected, 5)[1]
    assert len({r[0] for r in got}) == len(got) == 4


def test_radius_decisions_on_two_ray_workers_write_the_single_process_rows(local_ray, tmp_path, capsys):
    decide = ["--radius", 0.25, "--max-n", 2000]
    code, _, err = certify(capsys, tmp_path / "single.tsv", *decide)
    assert code == 0, err
    code, text, err = certify(capsys, tmp_path / "ray.tsv", *decide, "--ray", "local", "--workers", 2, "--block", 1)
    assert code == 0, err
    settings, got = rows(tmp_path / "ray.tsv", 6)  # idx label predict certified correct samples
    assert (settings, got) == rows(tmp_path / "single.tsv", 6)
    assert [int(r[0]) for r in got] == list(range(6)) and {r[3] for r in got} <= {"0", "1"}


ATTACK = ["--model", "fashion-mnist/standard", "fashion-mnist/l2-robust", "--norm", "l2", "--steps", 3,
          "--max", 40, "--batch", 10, "--threads", 1]


def test_an_attack_curve_on_two_ray_workers_is_the_single_process_curve(local_ray, tmp_path, capsys):
    # a uniform random start: each PGD batch draws from its own seed, so where it runs cannot matter
    curve = ["attack", "--curve", *ATTACK, "--eps", 0, 1.0, "--random-start", "uniform"]
    code, _, err = run(capsys, *curve, "--out", tmp_path / "single")
    assert code == 0, err
    code, _, err = run(capsys, *curve, "--out", tmp_path / "ray", "--ray", "local", "--workers", 2)
    assert code == 0, err
    for name in ("curve-l2.tsv", "curve-l2.points.tsv"):
        assert (tmp_path / "ray" / name).read_text() == (tmp_path / "single" / name).read_text()
    points = (tmp_path / "ray" / "curve-l2.points.tsv").read_text().splitlines()[2:]
    assert len(points) == 4 and all(line.endswith("\t40") for line in points)  # 2 models × 2 ε, all images


def test_a_transfer_matrix_on_ray_is_the_single_process_matrix(local_ray, tmp_path, capsys):
    transfer = ["attack", "--transfer", *ATTACK, "--eps", 1.0, "--target", "random"]
    code, _, err = run(capsys, *transfer, "--out", tmp_path / "single")
    assert code == 0, err
    code, _, err = run(capsys, *transfer, "--out", tmp_path / "ray", "--ray", "local", "--workers", 2, "--block", 20)
    assert code == 0, err
    single = json.loads((tmp_path / "single" / "transfer-l2-eps1.json").read_text())
    on_ray = json.loads((tmp_path / "ray" / "transfer-l2-eps1.json").read_text())
    assert on_ray == single


def test_a_block_that_splits_a_pgd_batch_is_refused(local_ray, tmp_path, capsys):
    code, _, err = run(capsys, "attack", "--curve", *ATTACK, "--eps", 1.0, "--out", tmp_path, "--ray", "local",
                       "--block", 15)
    assert code == 1
    assert "--block 15 is not a multiple of --batch 10" in err.strip().splitlines()[-1]


def test_build_dataset_on_ray_writes_the_single_process_arrays_and_resumes_from_written_chunks(
        local_ray, tmp_path, capsys):
    build = ["build-dataset", "--kind", "rand", "--count", 12, "--chunk", 4, "--pgd-steps", 3, "--threads", 1]
    code, _, err = run(capsys, *build, "--out", tmp_path / "single")
    assert code == 0, err
    # a driver killed after chunk 0: the chunk is on disk, nothing else
    (tmp_path / "ray" / "chunks").mkdir(parents=True)
    kept = tmp_path / "ray" / "chunks" / "chunk-00000.npz"
    shutil.copy2(tmp_path / "single" / "chunks" / "chunk-00000.npz", kept)
    written = kept.stat().st_mtime_ns
    code, _, err = run(capsys, *build, "--out", tmp_path / "ray", "--ray", "local", "--workers", 2)
    assert code == 0, err
    assert kept.stat().st_mtime_ns == written  # resumed: chunk 0 was not built again
    with np.load(tmp_path / "single" / "dataset.npz") as single, np.load(tmp_path / "ray" / "dataset.npz") as ray:
        assert sorted(ray.files) == sorted(single.files)
        for key in single.files:
            assert ray[key].dtype == single[key].dtype and ray[key].tobytes() == single[key].tobytes(), key
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["complete"] and [c["index"] for c in manifest["chunks"]] == [0, 1, 2]


def test_the_ilyas_pipeline_builds_its_datasets_on_ray_as_here(local_ray, tmp_path):
    construction = ConstructionSettings(count=8, chunk_size=4, steps=2, pgd_steps=2)
    training = ExperimentSettings(epochs=1, eval_images=10, eval_steps=1, eval_eps=(0.5,))
    arrays = {}
    for where, options in (("here", None), ("ray", cluster.ClusterOptions("local", 2))):
        request = IlyasExperimentRequest(workdir=str(tmp_path / where), test_images=50, construction=construction,
                                         training=training, baseline=False, kinds=("non-robust",),
                                         cluster=options)
        events = list(run_job(ilyas_experiment_job(ModelCache("cpu"), request), CancelToken()))
        assert isinstance(events[-1], Finished), events[-1]
        chunks = [e.value["index"] for e in events if isinstance(e, Partial) and e.kind == "chunk"]
        assert chunks == [0, 1]  # streamed in order
        with np.load(tmp_path / where / "D_NR" / "dataset.npz") as npz:
            arrays[where] = {key: npz[key].tobytes() for key in npz.files}
    assert arrays["ray"] == arrays["here"]


def test_a_ray_run_resumes_a_cut_single_process_file(local_ray, single, tmp_path, capsys):
    out = tmp_path / "resumed.tsv"
    lines = single[0].read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:4]) + lines[4][:5])  # two rows kept, the third cut mid-line
    code, _, err = certify(capsys, out, "--ray", "local", "--workers", 2)
    assert code == 0, err
    assert "2 of 6 rows already there are kept" in err
    assert rows(out, 5) == rows(single[0], 5)


def test_an_unreachable_cluster_fails_in_one_line(tmp_path, capsys):
    pytest.importorskip("ray", reason="ray is not installed")
    code, _, err = certify(capsys, tmp_path / "x.tsv", "--ray", "127.0.0.1:1", "--ray-timeout", 5)
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("robustlens certify: error: cannot reach the Ray cluster at "
                                                   "127.0.0.1:1")
    assert "Traceback" not in err


def test_an_app_job_aimed_at_an_unreachable_cluster_fails_in_one_line(fmnist_test):
    pytest.importorskip("ray", reason="ray is not installed")
    request = RobustnessRequest(("fashion-mnist/standard",), fmnist_test.images[:10], fmnist_test.labels[:10], "l2",
                                (0.5,), 2, cluster=cluster.ClusterOptions("127.0.0.1:1", timeout=5))
    events = list(run_job(cached_robustness_curves_job(ModelCache("cpu"), request), CancelToken()))
    assert isinstance(events[-1], Failed), events[-1]
    assert events[-1].message.startswith("cannot reach the Ray cluster at 127.0.0.1:1")
    assert "\n" not in events[-1].message


def test_ray_flags_where_they_mean_nothing_are_refused_in_one_line(tmp_path, capsys):
    assert "--ray runs --curve and --transfer" in one_line_error(
        capsys, ["attack", "--model", "fashion-mnist/standard", "--out", tmp_path, "--ray", "local"])
    assert "--workers needs --ray" in one_line_error(
        capsys, ["attack", "--curve", "--out", tmp_path, "--workers", 2])
    assert "give --chunk, not --block" in one_line_error(
        capsys, ["build-dataset", "--kind", "rand", "--count", 4, "--out", tmp_path / "d", "--ray", "local",
                 "--block", 2])


def test_worker_flags_without_ray_are_refused(tmp_path, capsys):
    code, _, err = certify(capsys, tmp_path / "x.tsv", "--workers", 2)
    assert code == 1 and "--workers needs --ray" in err
    assert not (tmp_path / "x.tsv").exists()


# ---------------------------------------------------------------- --shard and merge


def test_shards_are_disjoint_and_cover_the_index_list():
    positions = list(range(0, 103, 2))
    for count in (1, 2, 3, 7):
        slices = [cluster.shard_positions(positions, (i, count)) for i in range(count)]
        assert sorted(p for s in slices for p in s) == positions
        assert sum(len(s) for s in slices) == len(positions)


@pytest.fixture(scope="module")
def shards(single, tmp_path_factory):
    """certify --shard i/3 for i = 0, 1, 2."""
    folder = tmp_path_factory.mktemp("shards")
    paths = [folder / f"part{i}.tsv" for i in range(3)]
    for i, path in enumerate(paths):
        argv = ["certify", *COMMON, "--n0", 20, "--shard", f"{i}/3", "--out", path]
        assert main([str(a) for a in argv]) == 0
    return paths


def test_each_shard_holds_its_slice_and_records_it(shards, single):
    _, everything = rows(single[0], 5)
    for i, path in enumerate(shards):
        settings, got = rows(path, 5)
        assert '"shard": {"count": 3, "images": 6, "index": %d}' % i in settings
        assert got == everything[i::3]


def test_merge_of_all_shards_is_the_single_run_file(shards, single, tmp_path, capsys):
    out = tmp_path / "merged.tsv"
    code, text, err = run(capsys, "merge", out, shards[2], shards[0], shards[1])
    assert code == 0, err
    assert err == ""  # no duplicates, no gaps
    assert rows(out, 5) == rows(single[0], 5)
    # the merged file is the single run's: certify on it has nothing left to do
    code, text, err = certify(capsys, out)
    assert code == 0 and text.startswith("0 images certified")


def test_merge_reports_a_missing_shard_and_exits_nonzero(shards, tmp_path, capsys):
    out = tmp_path / "merged.tsv"
    code, _, err = run(capsys, "merge", out, shards[0], shards[2])
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[0] == "gaps: shard 1/3 not given (2 images)"
    assert lines[-1].startswith("robustlens merge: error: ")
    # what was there is written, and certify without --shard fills the gap from it
    assert len(rows(out, 5)[1]) == 4
    code, text, err = certify(capsys, out)
    assert code == 0 and text.startswith("2 images certified")


def test_merge_reports_a_short_shard(shards, tmp_path, capsys):
    short = tmp_path / "short.tsv"
    short.write_text("".join(shards[1].read_text().splitlines(keepends=True)[:-1]))
    code, _, err = run(capsys, "merge", tmp_path / "m.tsv", shards[0], short, shards[2])
    assert code == 1
    assert "gaps: shard 1/3 has 1 of 2 rows" in err


def test_merge_keeps_identical_duplicates_once_and_says_so(shards, single, tmp_path, capsys):
    out = tmp_path / "merged.tsv"
    code, _, err = run(capsys, "merge", out, *shards, shards[1])
    assert code == 0
    assert err.splitlines() == ["duplicates: 2 idx in more than one part with identical rows, kept once (1, 4)"]
    assert rows(out, 5) == rows(single[0], 5)


def test_merge_refuses_differing_rows_and_settings(shards, tmp_path, capsys):
    lines = shards[1].read_text().splitlines(keepends=True)
    changed = lines[2].split("\t")
    changed[2] = str((int(changed[2]) + 1) % 10)  # another prediction for the same idx
    forged = tmp_path / "forged.tsv"
    forged.write_text("".join(lines[:2]) + "\t".join(changed))
    code, _, err = run(capsys, "merge", tmp_path / "a.tsv", *shards, forged)
    assert code == 1 and "conflict: 1 idx with different rows" in err
    assert not (tmp_path / "a.tsv").exists()

    other_seed = tmp_path / "seed.tsv"
    other_seed.write_text(shards[1].read_text().replace('"seed": 11', '"seed": 12'))
    code, _, err = run(capsys, "merge", tmp_path / "b.tsv", shards[0], other_seed, shards[2])
    assert code == 1 and "settings differ" in err and "seed 11 vs 12" in err
    assert not (tmp_path / "b.tsv").exists()


def test_merge_refuses_slices_of_different_splits(shards, single, tmp_path, capsys):
    code, _, err = run(capsys, "merge", tmp_path / "m.tsv", shards[0], single[0])
    assert code == 1 and "not slices of one split" in err


def test_ray_without_ray_installed_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    code, _, err = certify(capsys, tmp_path / "x.tsv", "--ray", "local")
    assert code == 1
    assert err.strip().splitlines()[-1] == ("robustlens certify: error: --ray needs Ray: install robustlens[cluster] "
                                            "(pip install 'robustlens[cluster]')")


def test_asking_for_gpus_the_cluster_lacks_fails_in_one_line(local_ray, tmp_path, capsys):
    if local_ray.cluster_resources().get("GPU", 0) >= 1:
        pytest.skip("this Ray has a GPU")
    code, _, err = certify(capsys, tmp_path / "x.tsv", "--ray", "local", "--gpus-per-worker", 1)
    assert code == 1
    assert err.strip().splitlines()[-1] == ("robustlens certify: error: --gpus-per-worker 1 but the cluster has "
                                            "0 GPUs")
