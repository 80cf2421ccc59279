"""Data files in and out: what a bad file gets, and JSON Lines that survive a killed writer."""

from __future__ import annotations

import pytest

from trl_adpo.pipeline.io import load_data, read_jsonl, write_jsonl


def test_jsonl_round_trip_and_appending(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl([{"a": 1}, {"a": "é"}], path)
    write_jsonl([{"a": 3}], path, append=True)
    assert read_jsonl(path) == [{"a": 1}, {"a": "é"}, {"a": 3}]


def test_a_partial_last_line_is_dropped_only_when_asked(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": ')
    assert read_jsonl(path, partial_last_line=True) == [{"a": 1}, {"a": 2}]
    with pytest.raises(ValueError, match=r"rows.jsonl, line 3: not valid JSON"):
        read_jsonl(path)


def test_a_malformed_line_in_the_middle_is_named(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2,}\n{"a": 3}\n')
    with pytest.raises(ValueError, match=r"rows.jsonl, line 3: not valid JSON .*fix or remove that line"):
        read_jsonl(path, partial_last_line=True)
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"line 2: a JSON list, not an object with named columns"):
        read_jsonl(path)


@pytest.mark.parametrize("content", ["", "\n\n"], ids=["empty", "blank-lines"])
def test_an_empty_data_file_is_refused_with_its_option(tmp_path, content):
    path = tmp_path / "data.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=r"dataset_name: the file '.*data.jsonl' is empty"):
        load_data(str(path), None, "dataset_name")


def test_a_malformed_data_file_is_refused_before_datasets_reads_it(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a" "chosen": "b"}\n')
    with pytest.raises(ValueError, match=r"data.jsonl, line 2: not valid JSON"):
        load_data(str(path), None, "dataset_name")
    with pytest.raises(FileNotFoundError, match=r"eval_dataset_name: the file '.*absent.csv' does not exist"):
        load_data(str(tmp_path / "absent.csv"), None, "eval_dataset_name")
