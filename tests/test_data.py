"""l2optim.data: the shipped table, and the one CSV reader with its error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import l2optim
from l2optim.data import Table, read_csv


def write(tmp_path: Path, text: str | bytes, name: str = "t.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_shipped_demo_data_is_the_diabetes_table():
    X, y, names = l2optim.data.load_diabetes()
    assert X.shape == (442, 10) and y.shape == (442,)
    assert names == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    # Efron et al. (2004), table 1: the first patient, and the range of the response.
    assert X[0].tolist() == [59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87] and y[0] == 151
    assert (y.min(), y.max()) == (25, 346)
    table = read_csv(l2optim.data.diabetes_csv())
    assert table.columns[-1] == "progression" and table.values.shape == (442, 11)


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_the_separator_is_found(tmp_path, sep):
    path = write(tmp_path, sep.join(["a", "b", "y"]) + "\n" + sep.join(["1", "2.5", "-3e2"])
                 + "\n\n" + sep.join(["4", "5", "6"]) + "\n")
    table = read_csv(path)
    assert table == Table(("a", "b", "y"), np.array([[1, 2.5, -300.0], [4, 5, 6]]))
    assert read_csv(path, sep=sep) == table


def test_split_takes_out_the_target(tmp_path):
    table = read_csv(write(tmp_path, "a,y,b\n1,2,3\n4,5,6\n"))
    X, y, features = table.split("y")
    assert X.tolist() == [[1, 3], [4, 6]] and y.tolist() == [2, 5] and features == ["a", "b"]
    with pytest.raises(ValueError, match="unknown column 'z'; the columns are: a, y, b"):
        table.split("z")


def test_a_byte_order_mark_and_spaces_around_names_are_ignored(tmp_path):
    table = read_csv(write(tmp_path, "\ufeff a , y\n1,2\n".encode()))
    assert table.columns == ("a", "y")


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("", {}, "t.csv: the file is empty"),
        ("a,b\n", {}, "t.csv: a header row but no data rows"),
        ("a,b,y\n1,2,3\n4,five,6\n", {}, "t.csv: column 'b', row 2 (line 3): 'five' is not a number"),
        ("a,b,y\n1,,3\n", {}, "column 'b', row 1 (line 2) is empty; missing values are not supported"),
        ("a,y\n1,inf\n", {}, "column 'y', row 1 (line 2): 'inf' is not a finite number"),
        ("a,y\n1,2\n3\n", {}, "t.csv: row 2 (line 3) has 1 fields, the header has 2"),
        ("a,a\n1,2\n", {}, "column 'a' appears twice in the header"),
        ("a,,y\n1,2,3\n", {}, "the header has an empty column name"),
        ("y\n1\n", {}, "needs a target and at least one feature column, got ['y']"),
        # The wrong separator, given: the hint names the one the header uses.
        ("a;b;y\n1;2;3\n", {"sep": ","},
         "needs a target and at least one feature column, got ['a;b;y']; the header looks "
         "separated by ';': give sep=';'"),
    ],
)
def test_bad_files_name_what_is_wrong(tmp_path, text, kwargs, message):
    with pytest.raises(ValueError) as raised:
        read_csv(write(tmp_path, text), **kwargs)
    assert message in str(raised.value)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.csv: no such file"):
        read_csv(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="not a UTF-8 text file"):
        read_csv(write(tmp_path, b"a,b\n\xff\xfe,1\n"))
    with pytest.raises(ValueError, match="sep must be one character"):
        read_csv(write(tmp_path, "a,b\n1,2\n"), sep=";;")


def test_a_pandas_index_column_is_left_out_and_named_columns_dropped(tmp_path):
    path = tmp_path / "frame.csv"
    path.write_text(",id,a,b\n0,101,1.5,2\n1,102,2.5,3\n")
    table = l2optim.data.read_csv(path)
    assert table.columns == ("id", "a", "b") and table.dropped == ("",)
    np.testing.assert_array_equal(table.values, [[101, 1.5, 2], [102, 2.5, 3]])
    # A dropped column need not hold numbers.
    path.write_text("name,a,b\nx,1,2\ny,3,4\n")
    table = l2optim.data.read_csv(path, drop=["name"])
    assert table.columns == ("a", "b") and table.dropped == ("name",)
    with pytest.raises(ValueError, match="no column 'c' to drop; the columns are: name, a, b"):
        l2optim.data.read_csv(path, drop=["c"])
    path.write_text("a,,b\n1,2,3\n")
    with pytest.raises(ValueError, match="empty column name \\(only the first column"):
        l2optim.data.read_csv(path)
