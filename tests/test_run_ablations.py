"""tools/run_ablations.py: rows run (in parallel with --jobs), are skipped when done, failures
named."""

import importlib.util
import json
import os
import sys

import pytest
from fixtures import load_script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load():
    return load_script("tools/run_ablations.py")


def _fake_row(value, fail=False):
    """argv of a stand-in for train_net.py that writes an eval.json with P@0.5 = value."""
    code = (
        "import json, os, sys, time; time.sleep(0.3); out = sys.argv[1]; "
        + ("sys.exit(3); " if fail else "")
        + "os.makedirs(os.path.dirname(out), exist_ok=True); "
        + f"json.dump({{'segm': {{'P@0.5': {value}, 'mean_IoU': {value / 2}}}}}, open(out, 'w'))"
    )
    return lambda name, eval_json, out: [sys.executable, "-c", code, eval_json]


@pytest.mark.parametrize("jobs", [1, 3])
def test_rows_run_and_table_written(tmp_path, jobs):
    mod = _load()
    names = list(mod.ABLATIONS)[:3]
    results = mod.run_rows(names, str(tmp_path), _fake_row(42.0), jobs=jobs)
    assert [n for n, _ in results] == names
    for _, res in results:
        assert res["segm"]["P@0.5"] == 42.0 and res["train_minutes"] > 0
    table = (tmp_path / "table_iv.md").read_text()
    assert all(f"| {n} | 42.0 |" in table for n in names)
    assert set(json.loads((tmp_path / "table_iv.json").read_text())) == set(names)
    # parallel rows log to files, a single row to the console
    assert (tmp_path / f"{mod.slug(names[0])}.log").exists() == (jobs > 1)


def test_finished_rows_are_not_run_again(tmp_path):
    mod = _load()
    names = list(mod.ABLATIONS)[:2]
    mod.run_rows(names, str(tmp_path), _fake_row(10.0), jobs=2)
    # a command that would fail: nothing is run since both rows have their eval.json
    results = mod.run_rows(names, str(tmp_path), _fake_row(0.0, fail=True), jobs=2)
    assert [r["segm"]["P@0.5"] for _, r in results] == [10.0, 10.0]


def test_failed_row_is_named(tmp_path):
    mod = _load()
    name = list(mod.ABLATIONS)[0]
    with pytest.raises(RuntimeError, match=rf"{name}.*exit status 3.*\.log"):
        mod.run_rows([name], str(tmp_path), _fake_row(1.0, fail=True), jobs=2)


def test_every_table_has_a_preset_and_table_vii_rows_run(tmp_path, capsys):
    mod = _load()
    assert set(mod.ABLATION_TABLES) == {"I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX"}
    names = list(mod.ABLATION_TABLES["VII"])
    assert names == ["M+S", "S+M", "Joint"]
    mod.run_rows(names, str(tmp_path), _fake_row(7.0), jobs=3, table_id="VII")
    table = (tmp_path / "table_vii.md").read_text()
    assert table.startswith("| Table VII row |") and all(f"| {n} | 7.0 |" in table for n in names)
    # Table I shows the localisation precision
    assert mod.table([("K = 6", {"loc": {"P@0.9": 1.5}})], "I").splitlines()[0].count("loc P@") == 5
    # the command line: an unknown row of the chosen table is named
    with pytest.raises(SystemExit):
        mod.main(["--table", "VII", "--rows", "M+X", "--config-file", "c", "--output-dir", "o"])
    assert "unknown Table VII rows ['M+X']" in capsys.readouterr().err
