"""Run directories, configs and names from someone else (issue 26): no writes outside the
output, no hangs, no tracebacks. One section per kind of problem; every case here failed
(a traceback, a write through a link, an endless wait or a raw escape sequence) before
the fix. Real files, real CLI; no Ray is started (every refusal comes before it)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from shared_files import ktg, refused, tree

ESC = "\x1b]0;owned\x07\x1b[2J"  # set the window title, clear the screen


def _rewrite_results(run: Path, **cols) -> None:
    f = run / "results.parquet"
    df = pd.read_parquet(f)
    for k, v in cols.items():
        df[k] = v
    df.to_parquet(f, index=False)


# ---- 1. writes through links and locations set by others -----------------------------------
@pytest.mark.parametrize("name", ["../escaped", "a/b", "..", "x\x00y", "x\x1b[2Jy",
                                  "/tmp/abs", "." * 3, "x" * 200])
def test_1_a_run_name_is_a_plain_name(tmp_path, capsys, name):
    store = tmp_path / "store" / "runs"
    store.mkdir(parents=True)
    before = tree(tmp_path)
    code, _, err = ktg(["search", "--preset", "quick", "--name", name, "--storage-path",
                        store, "--set", "num_trials=1"], capsys)
    refused(code, err, "--name", "plain name")
    assert tree(tmp_path) == before  # no run directory, inside or out
    assert "\x1b" not in err


@pytest.mark.parametrize("sets", [{"storage": "sqlite:///{elsewhere}/stolen.db"},
                                  {"storage": "journal:{elsewhere}/optuna.log"},
                                  {"train": {"data_root": "{elsewhere}/data"}}])
def test_1_a_config_file_does_not_choose_where_ktg_writes(tmp_path, capsys, sets):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cfg = tmp_path / "shared" / "cfg.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps(sets).replace("{elsewhere}", str(elsewhere)))
    argv = ["search", "--config", cfg, "--storage-path", tmp_path / "runs", "--name", "r"]
    code, out, err = ktg(argv, capsys)
    refused(code, err, "--allow-external-storage", str(elsewhere))
    assert not (tmp_path / "runs").exists() and list(elsewhere.iterdir()) == []
    # accepted with the flag: the first line says where the study and data go (the
    # search then stops at the unreachable head node, before Ray or any file)
    code, out, err = ktg(argv + ["--allow-external-storage", "--address",
                                 f"127.0.0.1:{_closed_port()}"], capsys)
    assert out.splitlines()[0].startswith("config ") and str(elsewhere) in out.splitlines()[0]
    refused(code, err, "cannot reach")


def test_1_the_journal_is_not_written_through_a_link(run_copy, tmp_path):
    from ktg_search.errors import KtgError
    from ktg_search.results.book import ResultsBook
    target = tmp_path / "elsewhere.txt"
    target.write_text("mine\n")
    (run_copy / "journal.jsonl").unlink(missing_ok=True)
    (run_copy / "journal.jsonl").symlink_to(target)
    book = ResultsBook(run_copy)
    with pytest.raises(KtgError, match="symbolic link"):
        book.on_start("aaaa0001_00000")
    assert target.read_text() == "mine\n"


def test_1_the_search_log_is_not_written_through_a_link(tmp_path):
    from ktg_search.errors import KtgError
    from ktg_search.search.raylog import ray_output_to
    target = tmp_path / "victim"
    target.write_text("mine\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "search.log").symlink_to(target)
    with pytest.raises(KtgError, match="search log"):
        with ray_output_to(run / "search.log"):
            pass
    assert target.read_text() == "mine\n"


def test_1_resume_refuses_a_study_database_that_is_a_link(run_copy, tmp_path, capsys):
    target = tmp_path / "victim.db"
    target.write_bytes(b"")
    (run_copy / "optuna.db").unlink(missing_ok=True)
    (run_copy / "optuna.db").symlink_to(target)
    code, _, err = ktg(["search", "--resume", run_copy], capsys)
    refused(code, err, "study database", "symbolic link")
    assert target.read_bytes() == b""


def test_1_a_run_directory_that_is_a_link_is_refused(tmp_path, capsys):
    store, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    store.mkdir()
    elsewhere.mkdir()
    (store / "mine").symlink_to(elsewhere)
    code, _, err = ktg(["search", "--preset", "quick", "--name", "mine", "--storage-path",
                        store], capsys)
    refused(code, err, "symbolic link")
    assert list(elsewhere.iterdir()) == []


def test_1_report_leaves_an_empty_study_database_as_it_is(run_copy, capsys):
    db = run_copy / "optuna.db"
    db.write_bytes(b"")
    code, _, err = ktg(["report", run_copy, "--only", "importance", "--no-reeval"],
                       capsys)
    assert code == 0, err
    assert db.read_bytes() == b""  # Optuna would have written its tables into it
    md = (run_copy / "report" / "report.md").read_text()
    assert "empty" in md


def test_3_a_study_database_whose_trials_are_an_endless_view_is_refused(tmp_path):
    import sqlite3
    from ktg_search.errors import KtgError
    from ktg_search.files.schemas import check_study_database
    db = tmp_path / "optuna.db"
    con = sqlite3.connect(db)
    for t in ("studies", "trial_params", "trial_values"):
        con.execute(f"CREATE TABLE {t} (x)")
    con.execute("CREATE VIEW trials AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                "SELECT i + 1 FROM n) SELECT i AS trial_id FROM n")
    con.commit()
    con.close()
    before = db.read_bytes()
    t0 = time.monotonic()
    with pytest.raises(KtgError, match="'trials' is a view"):
        check_study_database(db)
    assert time.monotonic() - t0 < 10 and db.read_bytes() == before
    # teeth: a real Optuna study database passes
    import optuna
    real = tmp_path / "real.db"
    optuna.create_study(storage=f"sqlite:///{real}", study_name="s")
    check_study_database(real)


# ---- 2. tampered run files: readers validate each row --------------------------------------
BAD_JOURNAL_LINES = [
    {"event": "row", "time": 1.0, "trial_id": "zz", "row": {"trial_id": "zz"}},  # no status
    {"event": "row", "time": 1.0, "row": {"trial_id": ["a"], "status": "completed"}},
    {"event": "row", "time": 1.0, "row": {"trial_id": "zz", "status": ["completed"]}},
    {"event": "start", "time": "noon", "planned": 2, "resumed": False, "pid": 1,
     "host": "h", "finished_before": 0},
    {"event": "start", "time": 1.0, "planned": 2, "resumed": False, "pid": None,
     "host": "h", "finished_before": 0},
    {"event": "result", "time": 1.0, "trial_id": "zz", "result": {"epoch": {"x": 1}}},
    {"event": "trial-start", "time": 1.0, "trial_id": {"a": 1}},
    [1, 2], "text", None,
]


@pytest.mark.parametrize("line", [json.dumps(x) for x in BAD_JOURNAL_LINES] +
                         ["[" * 100_000 + "]" * 100_000, '{"event": "row", "event": "x"}'])
def test_2_a_tampered_journal_line_is_skipped_not_a_traceback(run_copy, capsys, line):
    with open(run_copy / "journal.jsonl", "a") as f:
        f.write(line + "\n")
    for argv in (["status", run_copy], ["query", run_copy], ["query", run_copy,
                                                              "--format", "json"]):
        code, out, err = ktg(argv, capsys)
        assert code == 0 and "Traceback" not in err, err
    code, out, _ = ktg(["query", run_copy, "--format", "json"], capsys)
    # the two real trials, and nothing from the bad line
    assert sorted(r["trial_id"] for r in json.loads(out)) == ["aaaa0001_00000",
                                                              "aaaa0001_00001"]


def test_2_journal_reader_keeps_good_events_around_bad_ones(tmp_path):
    from ktg_search.results.book import read_journal
    good = {"event": "trial-start", "time": 2.0, "trial_id": "t1"}
    lines = [json.dumps(x) for x in BAD_JOURNAL_LINES] + [json.dumps(good)]
    (tmp_path / "journal.jsonl").write_text("\n".join(lines) + "\n")
    assert read_journal(tmp_path) == [good]


def test_2_a_dictionary_encoded_results_column_reads(run_copy, capsys):
    df = pd.read_parquet(run_copy / "results.parquet")
    df["status"] = df["status"].astype("category")
    df["objective"] = df["objective"].astype("category")
    df.to_parquet(run_copy / "results.parquet", index=False)
    code, out, err = ktg(["query", run_copy, "--where", "status == 'completed' or "
                          "status != 'completed'", "--format", "json"], capsys)
    assert code == 0, err
    assert len(json.loads(out)) == 2
    code, out, err = ktg(["status", run_copy], capsys)
    assert code == 0, err


def test_2_trial_json_nested_deeply_is_skipped(run_copy):
    from ktg_search.files.fileio import latest_checkpoint
    ck = next(run_copy.glob("train_ktg_aaaa0001_00000/checkpoint_*"))
    (ck / "trial.json").write_text("[" * 100_000 + "]" * 100_000)
    # the old layout's fallback (Tune's directory names) still finds the checkpoint
    assert latest_checkpoint(run_copy, "aaaa0001_00000") == ck / "trainer.pt"
    (ck / "trial.json").write_text('{"trial_id": ["x"], "epoch": "1"}')
    assert latest_checkpoint(run_copy, "aaaa0001_00000") == ck / "trainer.pt"


@pytest.mark.parametrize("value", ["tensor", "dict", "object-list"])
def test_2_a_teacher_whose_stored_config_holds_a_tensor_is_a_message(tmp_path, capsys,
                                                                     value):
    import torch
    from ktg_search.errors import KtgError
    from ktg_search.method.graph import Graph
    from ktg_search.method.teachers import load_pretrained
    from ktg_search.method.trainconfig import TrainConfig
    from ktg_search.method.training import Trainer
    f = tmp_path / "teacher.pt"
    g = Graph.build(["dcgan-small"], {("D", 0): "through"})
    Trainer(g, TrainConfig(device="cpu")).export_generator(0, f)
    ckpt = torch.load(f, weights_only=True)
    ckpt["config"]["image_size"] = {"tensor": torch.tensor([32, 32]), "dict": {"a": 1},
                                    "object-list": [torch.zeros(2)]}[value]
    torch.save(ckpt, f)
    with pytest.raises(KtgError, match="stored config"):
        load_pretrained(str(f), 32, 3, 100)
    spec = {"nodes": [{"model": "dcgan-small"}, {"model": "dcgan-small",
                                                 "pretrained": str(f)}],
            "edges": [{"src": 1, "dst": 0, "gate": "through"}]}
    (tmp_path / "g.json").write_text(json.dumps(spec))
    code, _, err = ktg(["validate", tmp_path / "g.json"], capsys)
    refused(code, err, "stored config")


# ---- 3. sizes and work without bounds ------------------------------------------------------
@pytest.mark.parametrize("expr", ["graph * 100000000 == 'x'", "status * 10 ** 9 == ''",
                                  "1000000000 * trial_id != 'a'"])
def test_3_where_does_not_build_huge_text(run_copy, capsys, expr):
    t0 = time.monotonic()
    code, _, err = ktg(["query", run_copy, "--where", expr], capsys)
    refused(code, err, "--where")
    assert time.monotonic() - t0 < 10


def test_3_where_arithmetic_on_numbers_still_works(run_copy, capsys):
    code, out, err = ktg(["query", run_copy, "--where", "epochs * 2 == 2",
                          "--format", "json"], capsys)
    assert code == 0, err
    assert len(json.loads(out)) == 2  # each trial ran one epoch


@pytest.mark.parametrize("watch", ["inf", "nan", "-1", "0", "1e300", "-inf"])
def test_3_status_watch_is_a_bounded_number(run_copy, capsys, watch):
    code, _, err = ktg(["status", run_copy, f"--watch={watch}"], capsys)
    refused(code, err, "--watch")


def test_3_an_oversized_journal_is_refused(run_copy, capsys, monkeypatch):
    from ktg_search.files import schemas
    with open(run_copy / "journal.jsonl", "a") as f:
        f.write(" " * 4096 + "\n")
    monkeypatch.setattr(schemas, "MAX_JOURNAL_BYTES", 2048, raising=False)
    code, _, err = ktg(["status", run_copy], capsys)
    refused(code, err, "journal", "2,048")


def test_3_an_oversized_run_json_is_refused_by_status(run_copy, capsys):
    from ktg_search.files.safeload import MAX_JSON_BYTES
    info = json.loads((run_copy / "run.json").read_text())
    (run_copy / "run.json").write_text(json.dumps(info) + " " * (MAX_JSON_BYTES + 1))
    code, _, err = ktg(["status", run_copy], capsys)
    refused(code, err, "run.json", f"{MAX_JSON_BYTES:,}")


# ---- 4. hangs where a message belongs -------------------------------------------------------
def _closed_port() -> int:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


@pytest.mark.parametrize("form", ["127.0.0.1:{}", "ray://127.0.0.1:{}"])
def test_4_an_unreachable_head_node_is_a_message_in_bounded_time(tmp_path, capsys, form):
    address = form.format(_closed_port())
    t0 = time.monotonic()
    code, _, err = ktg(["search", "--preset", "quick", "--address", address,
                        "--storage-path", tmp_path / "runs", "--name", "r"], capsys)
    refused(code, err, address, "cannot reach")
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "runs").exists()  # no half-made run directory


def test_4_a_trial_no_node_can_place_is_refused_before_the_first(ray_session, tmp_path,
                                                                   capsys):
    code, _, err = ktg(["search", "--preset", "quick", "--gpus-per-trial", "1",
                        "--storage-path", tmp_path / "runs", "--name", "r"], capsys)
    refused(code, err, "GPU", "gpus-per-trial")
    # nothing ran, so nothing is left: a folder with run.json alone would block the name
    assert not (tmp_path / "runs" / "r").exists()


def test_4_ray_stopping_the_search_is_one_line(tmp_path):
    """What Tune raises when the experiment itself fails (not a trial: a node lost for
    good, the head gone) is one message that says where the details are and how to go
    on; the traceback is in the log."""
    import io
    import sys

    from ray.tune.error import TuneError

    from ktg_search.errors import KtgError
    from ktg_search.search.driver import _fit

    class Stopped:   # stands in for Tuner: Tune's own failure, raised from fit()
        def fit(self):
            raise TuneError("The Ray Tune run failed.\nTraceback (most recent call last):\n"
                            "  File x\nray.exceptions.RaySystemError: System error: lost")
    log, saved = io.StringIO(), sys.stderr
    sys.stderr = log
    try:
        with pytest.raises(KtgError) as e:
            _fit(Stopped(), tmp_path)
    finally:
        sys.stderr = saved
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("Ray stopped the search: The Ray Tune run failed.")
    assert f"--resume {tmp_path}" in msg and "search.log" in msg
    assert "RaySystemError: System error: lost" in log.getvalue()


def test_3_an_oversized_baseline_table_is_refused(run_copy, tmp_path, capsys, monkeypatch):
    from ktg_search.report import baselines
    folder = tmp_path / "cmp"
    folder.mkdir()
    (folder / "table.csv").write_text("graph,runs\n" + "x,y\n" * 1000)
    monkeypatch.setattr(baselines, "MAX_TABLE_BYTES", 1024)
    code, _, err = ktg(["report", run_copy, "--baselines", folder, "-o",
                        tmp_path / "rep"], capsys)
    refused(code, err, "table.csv", "1,024")
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("cpus,gpus,says", [(1e-5, 0, "steps of"), (0.33333, 0, "steps of"),
                                            (4096, 0, "largest node"),
                                            (1, 0.00001, "steps of")])
def test_4_resources_checked_against_the_cluster(ray_session, cpus, gpus, says):
    from ktg_search.errors import KtgError
    from ktg_search.search.workers import check_trial_resources
    with pytest.raises(KtgError, match=says):
        check_trial_resources(cpus, gpus)
    check_trial_resources(1, 0)    # teeth: what the test cluster (2 CPUs) can place
    check_trial_resources(0.5, 0)


# ---- 5. text from files printed raw; duplicate keys ----------------------------------------
def test_5_status_and_query_escape_names_from_the_run(run_copy, capsys):
    _rewrite_results(run_copy, graph_key=ESC)
    (run_copy / "journal.jsonl").unlink()  # its rows would replay over the table's
    for argv in (["status", run_copy], ["query", run_copy],
                 ["query", run_copy, "--columns", "trial_id,graph_key"]):
        code, out, err = ktg(argv, capsys)
        assert code == 0, err
        assert "\x1b" not in out and "\x07" not in out, argv
        assert "\\x1b" in out, argv  # shown, visibly


def test_5_error_messages_escape_values_from_files(tmp_path, capsys):
    g = tmp_path / "g.json"
    g.write_text(json.dumps({"nodes": [{"model": "evil" + ESC}], "edges": []}))
    code, _, err = ktg(["validate", g], capsys)
    assert code == 2 and "\x1b" not in err and "\x07" not in err, err


@pytest.mark.parametrize("text", [
    '{"nodes": [{"model": "dcgan-small"}], "nodes": [], "edges": []}',
    '{"nodes": [{"model": "dcgan-small", "model": "dcgan"}], "edges": []}'])
def test_5_duplicate_keys_in_a_graph_file_are_refused(tmp_path, capsys, text):
    g = tmp_path / "g.json"
    g.write_text(text)
    code, _, err = ktg(["validate", g], capsys)
    refused(code, err, "twice")


def test_5_duplicate_keys_in_run_json_are_refused(run_copy, capsys):
    text = (run_copy / "run.json").read_text()
    (run_copy / "run.json").write_text(text.replace('{', '{"name": "a", ', 1))
    code, _, err = ktg(["status", run_copy], capsys)
    refused(code, err, "twice", "name")


def test_5_for_terminal_keeps_plain_text_and_shows_controls():
    from ktg_search.files.schemas import for_terminal
    assert for_terminal("graph-1 é ✓\tx\ny") == "graph-1 é ✓\tx\ny"
    assert for_terminal("a\x1b[2Jb\x9bc\u202ed\x00") == "a\\x1b[2Jb\\x9bc\\u202ed\\x00"
