"""negsample.data: loaders and id maps, the submission writer, holdout_split, synthetic_dataset."""

from __future__ import annotations

import math
import pickle
import re
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from negsample import PositiveIndex
from negsample.data import (
    Interactions,
    holdout_split,
    load,
    load_competition_csv,
    load_lightgcn,
    load_pairs,
    load_pickle,
    synthetic_dataset,
    write_submission,
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def raw_pairs(data: Interactions) -> list[tuple[Any, Any]]:
    """The pairs of ``data`` in raw ids, in order."""
    return list(
        zip(data.user_ids[data.users].tolist(), data.item_ids[data.items].tolist(), strict=True)
    )


def rows(index: PositiveIndex) -> list[list[int]]:
    indptr = index.indptr.tolist()
    indices = index.indices.tolist()
    return [indices[indptr[u] : indptr[u + 1]] for u in range(index.num_users)]


def assert_names_line(err: pytest.ExceptionInfo[BaseException], path: Path, line: int) -> None:
    message = str(err.value)
    assert str(path) in message
    assert re.search(rf"\bline {line}\b", message), message


# ---------------------------------------------------------------------- lightgcn


def test_lightgcn_keeps_identity_ids_and_users_without_items(tmp_path: Path) -> None:
    path = write(tmp_path, "train.txt", "0 3 1\n2\n1 0 2 3\n")
    data = load_lightgcn(path)
    assert data.user_ids.tolist() == [0, 1, 2]
    assert data.item_ids.tolist() == [0, 1, 2, 3]
    assert data.user_ids.dtype == np.int64
    assert list(zip(data.users.tolist(), data.items.tolist(), strict=True)) == [
        (0, 3),
        (0, 1),
        (1, 0),
        (1, 2),
        (1, 3),
    ]
    assert (data.num_users, data.num_items, data.num_pairs) == (3, 4, 5)
    assert rows(data.to_index()) == [[1, 3], [0, 2, 3], []]


def test_lightgcn_remaps_gapped_integer_ids_in_numeric_order(tmp_path: Path) -> None:
    path = write(tmp_path, "train.txt", "100 70 5\n9 300\n\n  \n10 5 70\n")
    data = load_lightgcn(path)
    # Numeric order, not string order ("10" < "100" < "9").
    assert data.user_ids.tolist() == [9, 10, 100]
    assert data.item_ids.tolist() == [5, 70, 300]
    assert data.user_ids.dtype == np.int64
    assert raw_pairs(data) == [(100, 70), (100, 5), (9, 300), (10, 5), (10, 70)]
    assert data.user_lookup() == {9: 0, 10: 1, 100: 2}
    assert data.item_lookup() == {5: 0, 70: 1, 300: 2}


def test_lightgcn_ids_missing_zero_or_with_a_gap_are_not_identity(tmp_path: Path) -> None:
    data = load_lightgcn(write(tmp_path, "a.txt", "1 1\n2 3\n"))
    assert data.user_ids.tolist() == [1, 2]
    assert data.users.tolist() == [0, 1]
    assert data.item_ids.tolist() == [1, 3]
    assert data.items.tolist() == [0, 1]


def test_lightgcn_string_ids_sort_as_strings(tmp_path: Path) -> None:
    path = write(tmp_path, "train.txt", "bob x y\nalice y\ncarol\n")
    data = load_lightgcn(path)
    assert data.user_ids.tolist() == ["alice", "bob", "carol"]
    assert data.item_ids.tolist() == ["x", "y"]
    assert raw_pairs(data) == [("bob", "x"), ("bob", "y"), ("alice", "y")]


def test_lightgcn_non_canonical_integers_are_strings_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, "train.txt", "0 1 2\n\n1 02\n")
    with pytest.warns(UserWarning, match=r"line 3: item id '02' is not an integer"):
        data = load_lightgcn(path)
    assert data.item_ids.tolist() == ["02", "1", "2"]
    assert data.user_ids.tolist() == [0, 1]
    assert raw_pairs(data) == [(0, "1"), (0, "2"), (1, "02")]


def test_lightgcn_comma_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "train.txt", "0 1 2\n\n\n1 2,3\n")
    with pytest.raises(ValueError, match="unexpected ','") as err:
        load_lightgcn(path)
    assert_names_line(err, path, 4)
    assert "1 2,3" in str(err.value)


def test_lightgcn_handles_crlf_and_a_missing_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_bytes(b"0 1\r\n1 0 1")
    data = load_lightgcn(path)
    assert raw_pairs(data) == [(0, 1), (1, 0), (1, 1)]


@given(
    st.dictionaries(
        st.one_of(st.integers(-50, 50), st.from_regex(r"[a-z]{1,3}", fullmatch=True)),
        st.lists(st.integers(0, 30), max_size=5),
        max_size=8,
    )
)
def test_lightgcn_round_trips_raw_ids(mapping: dict[Any, list[int]]) -> None:
    text = "".join(f"{user} {' '.join(map(str, items))}\n" for user, items in mapping.items())
    mixed = len({type(user) for user in mapping}) > 1
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), "train.txt", text)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = load_lightgcn(path)
    assert len(caught) == int(mixed), [str(w.message) for w in caught]
    users = [str(user) if mixed else user for user in mapping]
    assert data.user_ids.tolist() == sorted(users)
    assert data.item_ids.tolist() == sorted({i for items in mapping.values() for i in items})
    expected = [(str(u) if mixed else u, i) for u, items in mapping.items() for i in items]
    assert raw_pairs(data) == expected


# ---------------------------------------------------------------------- competition CSV


def test_csv_loads_rows_empty_lists_and_quoted_lists(tmp_path: Path) -> None:
    path = write(tmp_path, "train.csv", 'UserId,ItemId\n7,3 1 3\n2,\n5,"1  9"\n')
    data = load_competition_csv(path)
    assert data.user_ids.tolist() == [2, 5, 7]
    assert data.item_ids.tolist() == [1, 3, 9]
    assert raw_pairs(data) == [(7, 3), (7, 1), (7, 3), (5, 1), (5, 9)]
    # Duplicate pairs collapse in the index; user 2 (internal 0) has no items.
    assert rows(data.to_index()) == [[], [0, 2], [0, 1]]


def test_csv_reads_quoted_fields_as_csv_does(tmp_path: Path) -> None:
    # A quoted user id is the id, not the id in quotes: the mixed file keeps int ids.
    text = 'UserId,ItemId\n"5","30 10"\n7,10\n"9",\n 11 , "30" \n'
    data = load_competition_csv(write(tmp_path, "train.csv", text))
    assert data.user_ids.tolist() == [5, 7, 9, 11]
    assert raw_pairs(data) == [(5, 30), (5, 10), (7, 10), (11, 30)]
    quoted_header = write(tmp_path, "quoted.csv", '"UserId","ItemId"\n"a",b\n')
    assert raw_pairs(load_competition_csv(quoted_header)) == [("a", "b")]
    # So what it reads can be written back.
    path = tmp_path / "submission.csv"
    write_submission(path, [0, 3], [[0, 1], [1, -1]], data)
    assert path.read_text().splitlines() == ["UserId,ItemId", "5,10 30", "11,30"]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("UserId,ItemIds\n0,1\n", 1, "header"),
        ("user,item\n0,1\n", 1, "header"),
        ("", 1, "header"),
        ("UserId,ItemId\n0,1 2\n1 2 3\n", 3, "no comma"),
        ("UserId,ItemId\n0,1 2\n\n1,2,3\n", 4, "several"),
        ("UserId,ItemId\n ,1 2\n", 2, "user id"),
        ("UserId,ItemId\n0 1,2\n", 2, "user id"),
        ('UserId,ItemId\n0,1\n5,"30 10\n', 3, "not a valid CSV row"),
        ('UserId,ItemId\n"5" x,30\n', 2, "not a valid CSV row"),
        ('UserId,ItemId\n5,"30,10"\n', 2, "comma or a quote"),
        ('UserId,ItemId\n"a""b",1\n', 2, "comma or a quote"),
    ],
)
def test_csv_malformed_input_names_file_and_line(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(ValueError, match=fragment) as err:
        load_competition_csv(path)
    assert_names_line(err, path, line)


def test_csv_error_shows_the_offending_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.csv", "UserId,ItemId\n0,1\nuser 17 has items\n")
    with pytest.raises(ValueError, match="'user 17 has items'"):
        load_competition_csv(path)


@pytest.mark.parametrize(
    ("text", "line", "what", "value"),
    [
        ("UserId,ItemId\n1,2 3\n2,3\n3x,1\n", 4, "user", "3x"),
        ("UserId,ItemId\n1,2 3\n2,3 O7 4\n", 3, "item", "O7"),
        ("UserId,ItemId\n1,2\n02,3\n", 3, "user", "02"),  # not the canonical form of 2
    ],
)
def test_csv_a_non_integer_id_among_integers_is_an_error_naming_file_line_and_id(
    tmp_path: Path, text: str, line: int, what: str, value: str
) -> None:
    path = write(tmp_path, "train.csv", text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an error, not a warning
        with pytest.raises(ValueError, match=f"{what} id '{value}' is not an integer") as err:
            load_competition_csv(path)
    assert_names_line(err, path, line)
    assert "string_ids=True" in str(err.value)


def test_csv_string_ids_reads_every_id_as_a_string(tmp_path: Path) -> None:
    path = write(tmp_path, "train.csv", "UserId,ItemId\n10,2 3\n9,3\n3x,10\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_competition_csv(path, string_ids=True)
    assert data.user_ids.tolist() == ["10", "3x", "9"]  # string order
    assert data.item_ids.tolist() == ["10", "2", "3"]
    assert raw_pairs(data) == [("10", "2"), ("10", "3"), ("9", "3"), ("3x", "10")]
    # A second file in the same id space, and the round trip through a submission.
    test = load_competition_csv(
        write(tmp_path, "test.csv", "UserId,ItemId\n9,2\n"), like=data, string_ids=True
    )
    assert raw_pairs(test) == [("9", "2")]
    out = tmp_path / "submission.csv"
    write_submission(out, torch.tensor([0, 2]), torch.tensor([[1], [0]]), data)
    assert out.read_text() == "UserId,ItemId\n10,2\n9,10\n"
    with pytest.raises(TypeError, match="string_ids must be a bool"):
        load_competition_csv(path, string_ids="yes")  # type: ignore[arg-type]


def test_csv_all_string_ids_need_no_option(tmp_path: Path) -> None:
    path = write(tmp_path, "train.csv", "UserId,ItemId\nbob,x y\nann,y\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_competition_csv(path)
    assert data.user_ids.tolist() == ["ann", "bob"]


def test_csv_repeated_users_are_merged_with_a_warning_that_counts_them(tmp_path: Path) -> None:
    text = "UserId,ItemId\n5,1 2\n7,3\n5,4\n8,\n7,1\n5,2 9\n"
    path = write(tmp_path, "train.csv", text)
    with pytest.warns(UserWarning) as caught:
        data = load_competition_csv(path)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert str(path) in message
    # Users 5 (3 rows) and 7 (2 rows): 2 users, 3 extra rows, the first extra at line 4.
    assert "2 user ids are on more than one row (3 extra rows, the first at line 4" in message
    assert "merged" in message
    assert rows(data.to_index()) == [[0, 1, 3, 4], [0, 2], []]  # items 1 2 4 9; 3 1; none
    # One row per user: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_competition_csv(write(tmp_path, "ok.csv", "UserId,ItemId\n5,1 2\n7,3\n"))


# ---------------------------------------------------------------------- pairs


MOVIELENS = (
    "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n196\t51\t5\t880606923\n"
)


def test_pairs_movielens_layout_remaps_one_based_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "u.data", MOVIELENS)
    data = load_pairs(path)
    assert data.user_ids.tolist() == [22, 186, 196]
    assert data.item_ids.tolist() == [51, 242, 302, 377]
    assert raw_pairs(data) == [(196, 242), (186, 302), (22, 377), (196, 51)]


def test_pairs_rating_threshold_keeps_pairs_at_or_above_it_and_all_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "u.data", MOVIELENS)
    data = load_pairs(path, rating_threshold=3)
    assert raw_pairs(data) == [(196, 242), (186, 302), (196, 51)]
    # User 22 and item 377 only appear in a pair rated 1, yet keep their ids.
    assert data.user_ids.tolist() == [22, 186, 196]
    assert data.item_ids.tolist() == [51, 242, 302, 377]
    assert raw_pairs(load_pairs(path, rating_threshold=4.5)) == [(196, 51)]


def test_pairs_delimiter_and_header(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "userId,movieId,rating\nu1, m2 ,4.5\nu2,m1,2.0\n")
    data = load_pairs(path, delimiter=",", skip_header=True, rating_threshold=4.0)
    assert raw_pairs(data) == [("u1", "m2")]
    assert data.item_ids.tolist() == ["m1", "m2"]
    with pytest.raises(ValueError, match="rating 'rating' is not a number") as err:
        load_pairs(path, delimiter=",", rating_threshold=4.0)
    assert_names_line(err, path, 1)


@pytest.mark.parametrize(
    ("text", "kwargs", "line", "fragment"),
    [
        ("1 2 5\n3\n", {}, 2, "at least two fields"),
        ("1 2 5\n3 4 five\n", {"rating_threshold": 3}, 2, "not a number"),
        ("1 2 5\n3 4 nan\n", {"rating_threshold": 3}, 2, "not a number"),
        ("1 2 5\n\n3 4\n", {"rating_threshold": 3}, 3, "no rating"),
        ("1,2\n,4\n", {"delimiter": ","}, 2, "empty"),
        ("1,2\n3,,5\n", {"delimiter": ","}, 2, "empty"),
    ],
)
def test_pairs_malformed_input_names_file_and_line(
    tmp_path: Path, text: str, kwargs: dict[str, Any], line: int, fragment: str
) -> None:
    path = write(tmp_path, "bad.txt", text)
    with pytest.raises(ValueError, match=fragment) as err:
        load_pairs(path, **kwargs)
    assert_names_line(err, path, line)


def test_pairs_rejects_bad_arguments(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", "1 2\n")
    with pytest.raises(ValueError, match="delimiter"):
        load_pairs(path, delimiter="")
    with pytest.raises(TypeError, match="rating_threshold"):
        load_pairs(path, rating_threshold="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rating_threshold"):
        load_pairs(path, rating_threshold=math.inf)
    with pytest.raises(ValueError, match="unknown"):
        load_pairs(path, unknown="ignore")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="like"):
        load_pairs(path, like={"a": 1})  # type: ignore[arg-type]


# ---------------------------------------------------------------------- pickle


def dump(tmp_path: Path, name: str, obj: object) -> Path:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(obj))
    return path


def test_pickle_defaultdict_of_sets_keeps_identity_ids(tmp_path: Path) -> None:
    train: defaultdict[int, set[int]] = defaultdict(set)
    train[0].update({2, 0})
    train[2].add(1)
    train[1] = set()  # a user with no items
    data = load_pickle(dump(tmp_path, "train.pkl", train))
    assert data.user_ids.tolist() == [0, 1, 2]
    assert data.item_ids.tolist() == [0, 1, 2]
    assert rows(data.to_index()) == [[0, 2], [], [1]]


def test_pickle_remaps_gapped_and_string_ids(tmp_path: Path) -> None:
    data = load_pickle(dump(tmp_path, "a.pkl", {10: [7, 3], 4: (3,)}))
    assert data.user_ids.tolist() == [4, 10]
    assert data.item_ids.tolist() == [3, 7]
    assert sorted(raw_pairs(data)) == [(4, 3), (10, 3), (10, 7)]
    data = load_pickle(dump(tmp_path, "b.pkl", {"b": {"x"}, "a": ["y", "x"]}))
    assert data.user_ids.tolist() == ["a", "b"]
    assert data.item_ids.tolist() == ["x", "y"]
    assert sorted(raw_pairs(data)) == [("a", "x"), ("a", "y"), ("b", "x")]


def test_pickle_keeps_string_digits_as_strings(tmp_path: Path) -> None:
    # Pickled ids are objects: "10" is a string and sorts before "9".
    data = load_pickle(dump(tmp_path, "a.pkl", {"9": [1], "10": [0]}))
    assert data.user_ids.tolist() == ["10", "9"]


def test_pickle_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mutually comparable"):
        load_pickle(dump(tmp_path, "a.pkl", {1: [1], "b": [2]}))
    with pytest.raises(TypeError, match="items of user 1"):
        load_pickle(dump(tmp_path, "b.pkl", {0: [1], 1: "ab"}))
    with pytest.raises(TypeError, match="mapping"):
        load_pickle(dump(tmp_path, "c.pkl", [[0, 1]]))
    path = write(tmp_path, "d.pkl", "not a pickle")
    with pytest.raises(ValueError, match="not a valid pickle") as err:
        load_pickle(path)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------------- like= and unknown ids


def test_like_shares_the_id_space(tmp_path: Path) -> None:
    train = load_lightgcn(write(tmp_path, "train.txt", "10 5 7\n20 7 9\n30 5\n"))
    test = load_lightgcn(write(tmp_path, "test.txt", "30 9\n10 9 5\n"), like=train)
    assert test.user_ids is train.user_ids
    assert test.item_ids is train.item_ids
    assert raw_pairs(test) == [(30, 9), (10, 9), (10, 5)]
    # Alone, the test file would get a different, smaller id space.
    alone = load_lightgcn(write(tmp_path, "test2.txt", "30 9\n10 9 5\n"))
    assert alone.user_ids.tolist() == [10, 30]
    assert rows(test.to_index()) == [[0, 2], [], [2]]


def test_like_unknown_id_error_names_file_line_and_id(tmp_path: Path) -> None:
    train = load_lightgcn(write(tmp_path, "train.txt", "10 5 7\n20 7 9\n"))
    path = write(tmp_path, "test.txt", "10 9\n\n20 5 8 7\n")
    with pytest.raises(ValueError, match="item id '8'") as err:
        load_lightgcn(path, like=train)
    assert_names_line(err, path, 3)
    path = write(tmp_path, "test2.txt", "10 9\n99\n")
    with pytest.raises(ValueError, match="user id '99'") as err:
        load_lightgcn(path, like=train)
    assert_names_line(err, path, 2)


def test_like_unknown_drop_drops_pairs_and_warns_with_the_count(tmp_path: Path) -> None:
    train = load_lightgcn(write(tmp_path, "train.txt", "10 5 7\n20 7 9\n"))
    path = write(tmp_path, "test.txt", "10 9 6\n99 5 7\n20 5\n")
    with pytest.warns(UserWarning, match="dropped 3 of 5 pairs"):
        test = load_lightgcn(path, like=train, unknown="drop")
    assert raw_pairs(test) == [(10, 9), (20, 5)]


def test_like_works_across_formats_and_id_kinds(tmp_path: Path) -> None:
    train = load_pickle(dump(tmp_path, "train.pkl", {"ann": {"x", "y"}, "bo": {"z"}}))
    test = load_competition_csv(write(tmp_path, "t.csv", "UserId,ItemId\nbo,y x\n"), like=train)
    assert raw_pairs(test) == [("bo", "y"), ("bo", "x")]
    ints = load_pickle(dump(tmp_path, "ints.pkl", {0: {1}, 1: {0}}))
    # Text ids are matched to integer ids by value ...
    pairs = load_pairs(write(tmp_path, "p.txt", "1 1\n"), like=ints)
    assert raw_pairs(pairs) == [(1, 1)]
    # ... but only canonical integers are integer ids.
    with pytest.raises(ValueError, match="user id '01'"):
        load_pairs(write(tmp_path, "q.txt", "01 1\n"), like=ints)


def test_like_with_pickle_and_rating_threshold(tmp_path: Path) -> None:
    train = load_pickle(dump(tmp_path, "train.pkl", {0: {0, 1}, 1: {2}}))
    test = load_pickle(dump(tmp_path, "test.pkl", {1: {0}}), like=train)
    assert raw_pairs(test) == [(1, 0)]
    assert test.num_users == 2
    with pytest.raises(ValueError, match="user id 5") as err:
        load_pickle(dump(tmp_path, "bad.pkl", {5: {0}}), like=train)
    assert "bad.pkl" in str(err.value)
    # Item 9 is unknown, in a pair below the threshold: every id is checked ...
    path = write(tmp_path, "r.txt", "0 1 5\n1 9 1\n1 2 4\n")
    with pytest.raises(ValueError, match="item id '9'") as err:
        load_pairs(path, rating_threshold=3, like=train)
    assert_names_line(err, path, 2)
    # ... but with "drop" only kept pairs count as dropped: none here, so no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = load_pairs(path, rating_threshold=3, like=train, unknown="drop")
    assert raw_pairs(kept) == [(0, 1), (1, 2)]


# ---------------------------------------------------------------------- load()


def test_load_dispatches_on_extension_and_format(tmp_path: Path) -> None:
    txt = write(tmp_path, "train.txt", "0 1\n1 0\n")
    csv = write(tmp_path, "train.csv", "UserId,ItemId\n0,1\n1,0\n")
    pkl = dump(tmp_path, "train.pickle", {0: [1], 1: [0]})
    dat = write(tmp_path, "u.data", "0 1 5\n1 0 1\n")
    expected = [(0, 1), (1, 0)]
    for path in (txt, csv, pkl):
        assert raw_pairs(load(path)) == expected
    assert raw_pairs(load(dat, "pairs")) == expected
    assert raw_pairs(load(dat, "pairs", rating_threshold=2)) == [(0, 1)]
    assert raw_pairs(load(csv, format="csv")) == expected
    with pytest.raises(ValueError, match=r"u\.data"):
        load(dat)
    with pytest.raises(ValueError, match="format"):
        load(txt, "json")


# ---------------------------------------------------------------------- Interactions


def test_interactions_validates_its_fields() -> None:
    ids = np.arange(3)
    with pytest.raises(ValueError, match="users"):
        Interactions(np.array([3]), np.array([0]), ids, ids)
    with pytest.raises(ValueError, match="items"):
        Interactions(np.array([0]), np.array([-1]), ids, ids)
    with pytest.raises(ValueError, match="same length"):
        Interactions(np.array([0, 1]), np.array([0]), ids, ids)
    with pytest.raises(ValueError, match="distinct"):
        Interactions(np.array([0]), np.array([0]), np.array([4, 4]), ids)
    with pytest.raises(TypeError, match="integer"):
        Interactions(np.array([0.0]), np.array([0]), ids, ids)


def test_interactions_lookups_invert_the_id_arrays() -> None:
    data = Interactions(
        np.array([1, 0]), np.array([0, 0]), np.array(["b", "a"], dtype=object), np.array([42])
    )
    lookup = data.user_lookup()
    assert all(data.user_ids[lookup[raw]] == raw for raw in ["a", "b"])
    assert data.item_lookup() == {42: 0}
    lookup["a"] = 5  # a new dict each call
    assert data.user_lookup()["a"] == 1


# ---------------------------------------------------------------------- write_submission


def test_submission_round_trip(tmp_path: Path) -> None:
    train = load_lightgcn(write(tmp_path, "train.txt", "u7 a b\nu3 c\nu5 d e\nu9\n"))
    # internal users: u3=0 u5=1 u7=2 u9=3; items: a=0 b=1 c=2 d=3 e=4
    users = torch.tensor([2, 0, 3])
    recs = torch.tensor([[4, 2, 0], [1, -1, -1], [-1, -1, -1]])
    path = tmp_path / "submission.csv"
    write_submission(path, users, recs, train)
    assert path.read_text().splitlines() == ["UserId,ItemId", "u7,e c a", "u3,b", "u9,"]
    back = load_competition_csv(path, like=train)
    expected = {"u7": ["e", "c", "a"], "u3": ["b"], "u9": []}
    got: dict[str, list[str]] = {}
    for user, item in raw_pairs(back):
        got.setdefault(user, []).append(item)
    assert {u: got.get(u, []) for u in expected} == expected
    assert set(got) <= set(expected)


def test_submission_round_trip_with_integer_ids_and_numpy_input(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    raw_users = np.array([5, 17, 40, 41, 1000])
    raw_items = np.array([2, 3, 11, 12, 13, 99, 250])
    data = Interactions(np.array([0]), np.array([0]), raw_users, raw_items)
    users = rng.permutation(5)
    recs = np.stack([rng.choice(7, size=4, replace=False) for _ in range(5)])
    recs[0, 2:] = -1
    path = tmp_path / "s.csv"
    write_submission(path, users, recs, data)
    back = load_competition_csv(path)
    got: dict[int, list[int]] = {}
    for user, item in raw_pairs(back):
        got.setdefault(user, []).append(item)
    for u, row in zip(users, recs, strict=True):
        assert got[int(raw_users[u])] == [int(raw_items[i]) for i in row if i >= 0]


def test_submission_rejects_bad_input(tmp_path: Path) -> None:
    data = Interactions(np.array([0]), np.array([0]), np.arange(2), np.arange(3))
    path = tmp_path / "s.csv"
    with pytest.raises(ValueError, match="repeat"):
        write_submission(path, [0, 0], [[1], [2]], data)
    with pytest.raises(ValueError, match="users"):
        write_submission(path, [2], [[1]], data)
    with pytest.raises(ValueError, match="recommendations"):
        write_submission(path, [0], [[3]], data)
    with pytest.raises(ValueError, match="recommendations"):
        write_submission(path, [0], [[-2]], data)
    with pytest.raises(ValueError, match="shape"):
        write_submission(path, [0, 1], [[1]], data)


def test_submission_refuses_an_item_twice_in_a_row(tmp_path: Path) -> None:
    data = Interactions(np.array([0]), np.array([0]), np.array([7, 8]), np.array([3, 4, 5]))
    path = tmp_path / "s.csv"
    with pytest.raises(
        ValueError,
        match=r"must not repeat an item within a row, got item 1 twice in row 1 \(user 0\)",
    ):
        write_submission(path, [1, 0], [[0, 1, 2], [1, 1, 2]], data)
    assert not path.exists()
    # Padding is no item: it may fill the end of every row.
    write_submission(path, [1, 0], [[2, -1, -1], [-1, -1, -1]], data)
    assert path.read_text().splitlines() == ["UserId,ItemId", "8,5", "7,"]
    with pytest.raises(TypeError, match="interactions"):
        write_submission(path, [0], [[1]], object())  # type: ignore[arg-type]
    commas = Interactions(
        np.array([0]), np.array([0]), np.array(["a"], dtype=object), np.array(["x,y"], dtype=object)
    )
    with pytest.raises(ValueError, match="comma"):
        write_submission(path, [0], [[0]], commas)


# ---------------------------------------------------------------------- holdout_split


def random_index(seed: int, num_users: int = 300, num_items: int = 40) -> PositiveIndex:
    rng = np.random.default_rng(seed)
    degrees = rng.integers(0, 15, size=num_users)
    degrees[:5] = [0, 1, 2, 3, num_items]
    mapping = {u: rng.choice(num_items, size=d, replace=False) for u, d in enumerate(degrees)}
    return PositiveIndex.from_dict(mapping, num_users=num_users, num_items=num_items)


def expected_held(k: int, fraction: float) -> int:
    if k < 2 or fraction == 0:
        return 0
    nearest = int(fraction * k + 0.5)
    return min(max(nearest, 1), k - 1)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.2, 0.5, 0.9])
def test_holdout_split_invariants(fraction: float) -> None:
    index = random_index(0)
    train, valid = holdout_split(index, fraction, seed=1)
    assert (train.num_users, train.num_items) == (index.num_users, index.num_items)
    assert (valid.num_users, valid.num_items) == (index.num_users, index.num_items)
    for full, tr, va in zip(rows(index), rows(train), rows(valid), strict=True):
        assert not set(tr) & set(va)
        assert sorted(tr + va) == full
        assert len(va) == expected_held(len(full), fraction)
        if len(full) == 1:
            assert tr == full


def test_holdout_split_counts_on_hand_checked_cases() -> None:
    index = PositiveIndex.from_dict({0: range(10), 1: range(3), 2: range(2), 3: [0]}, num_items=10)
    _, valid = holdout_split(index, 0.2)
    # 0.2 * 10 = 2; 0.2 * 3 = 0.6 -> 1; 0.2 * 2 = 0.4 -> 0, raised to 1; one item stays.
    assert valid.degree(torch.arange(4)).tolist() == [2, 1, 1, 0]
    _, valid = holdout_split(index, 0.5)
    # 0.5 * 3 = 1.5 rounds half up to 2; 0.5 * 2 = 1.
    assert valid.degree(torch.arange(4)).tolist() == [5, 2, 1, 0]
    _, valid = holdout_split(index, 0.95)
    # At most k - 1.
    assert valid.degree(torch.arange(4)).tolist() == [9, 2, 1, 0]


def test_holdout_split_is_deterministic_given_the_seed() -> None:
    index = random_index(1)
    first = holdout_split(index, 0.3, seed=5)
    again = holdout_split(index, 0.3, seed=5)
    other = holdout_split(index, 0.3, seed=6)
    assert rows(first[1]) == rows(again[1])
    assert rows(first[0]) == rows(again[0])
    assert rows(first[1]) != rows(other[1])


def test_holdout_split_picks_items_uniformly() -> None:
    # One user with 5 items, one held out per split: each item should be held out
    # in 1/5 of 1000 seeds. Chi-square with 4 degrees of freedom, alpha = 0.001:
    # critical value 18.47. Fixed seeds, so the test is deterministic.
    index = PositiveIndex.from_dict({0: [1, 3, 4, 6, 8]}, num_items=10)
    counts = dict.fromkeys([1, 3, 4, 6, 8], 0)
    for seed in range(1000):
        (item,) = rows(holdout_split(index, 0.2, seed=seed)[1])[0]
        counts[item] += 1
    chi2 = sum((c - 200) ** 2 / 200 for c in counts.values())
    assert chi2 < 18.47, counts


def test_holdout_split_rejects_bad_arguments() -> None:
    index = random_index(2)
    for fraction in (1.0, 1.5, -0.1, math.nan):
        with pytest.raises(ValueError, match="fraction"):
            holdout_split(index, fraction)
    with pytest.raises(TypeError, match="fraction"):
        holdout_split(index, "0.2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        holdout_split(index, 0.2, seed=-1)
    with pytest.raises(TypeError, match="index"):
        holdout_split({0: [1]}, 0.2)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- synthetic_dataset


def test_synthetic_dataset_shape_degrees_and_determinism() -> None:
    index = synthetic_dataset(500, 300, interactions_per_user=12, seed=3)
    assert (index.num_users, index.num_items) == (500, 300)
    degrees = index.degree(torch.arange(500))
    assert int(degrees.min()) >= 2
    assert int(degrees.max()) <= 299
    assert abs(degrees.float().mean().item() - 12) < 1.5
    assert len(set(degrees.tolist())) > 5  # degrees vary
    again = synthetic_dataset(500, 300, interactions_per_user=12, seed=3)
    assert torch.equal(index.indptr, again.indptr)
    assert torch.equal(index.indices, again.indices)
    other = synthetic_dataset(500, 300, interactions_per_user=12, seed=4)
    assert not torch.equal(index.indices[:100], other.indices[:100])


def top_decile_share(index: PositiveIndex) -> float:
    counts = np.bincount(index.indices.long().numpy(), minlength=index.num_items)
    top = np.sort(counts)[::-1][: index.num_items // 10]
    return float(top.sum() / counts.sum())


def test_synthetic_dataset_popularity_is_skewed_and_controlled_by_alpha() -> None:
    default = top_decile_share(synthetic_dataset())
    assert default > 0.3  # well over the 0.1 of uniform popularity
    flat = top_decile_share(synthetic_dataset(popularity_alpha=0.0))
    steep = top_decile_share(synthetic_dataset(popularity_alpha=2.0))
    assert flat < default < steep


def test_synthetic_dataset_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_items"):
        synthetic_dataset(10, 2)
    with pytest.raises(ValueError, match="interactions_per_user"):
        synthetic_dataset(10, 10, interactions_per_user=10)
    with pytest.raises(ValueError, match="temperature"):
        synthetic_dataset(10, 10, interactions_per_user=5, temperature=0.0)
    with pytest.raises(ValueError, match="popularity_alpha"):
        synthetic_dataset(10, 10, interactions_per_user=5, popularity_alpha=-1.0)
    with pytest.raises(TypeError, match="dim"):
        synthetic_dataset(10, 10, interactions_per_user=5, dim=2.5)  # type: ignore[arg-type]


def degree_gini(index: PositiveIndex) -> float:
    degrees = np.sort(np.diff(index.indptr.long().numpy())).astype(np.float64)
    n = degrees.size
    return float((2 * np.arange(1, n + 1) - n - 1) @ degrees / (n * degrees.sum()))


def test_synthetic_dataset_noise_keeps_degrees_and_moves_positives_to_popular_items() -> None:
    # Same seed: the degrees are drawn before any positive, so noise changes which items
    # a user has, never how many; the popularity-only share piles onto the popular head.
    noiseless = synthetic_dataset(600, 400, noise_fraction=0.0, seed=2)
    shares = [top_decile_share(noiseless)]
    for noise in (0.5, 0.9):
        index = synthetic_dataset(600, 400, noise_fraction=noise, seed=2)
        again = synthetic_dataset(600, 400, noise_fraction=noise, seed=2)
        assert torch.equal(index.indices, again.indices)
        assert torch.equal(index.indptr, noiseless.indptr)
        assert not torch.equal(index.indices, noiseless.indices)
        shares.append(top_decile_share(index))
    assert shares[0] < shares[1] < shares[2], shares


def test_synthetic_dataset_degree_sigma_sets_the_spread_of_user_degrees() -> None:
    flat = synthetic_dataset(800, 500, interactions_per_user=20, degree_sigma=0.0, seed=1)
    assert set(flat.degree(torch.arange(800)).tolist()) == {20}
    ginis = [
        degree_gini(synthetic_dataset(800, 500, interactions_per_user=20, degree_sigma=s, seed=1))
        for s in (0.0, 0.5, 1.0, 1.5)
    ]
    assert ginis[0] == 0.0
    assert ginis[0] < ginis[1] < ginis[2] < ginis[3], ginis
    heavy = synthetic_dataset(800, 500, interactions_per_user=20, degree_sigma=1.5, seed=1)
    degrees = heavy.degree(torch.arange(800))
    assert int(degrees.min()) == 2 and int(degrees.max()) <= 499
    floored = synthetic_dataset(
        800, 500, interactions_per_user=20, degree_sigma=1.5, min_interactions=8, seed=1
    ).degree(torch.arange(800))
    assert int(floored.min()) == 8
    # The floor lifts only the light users: the others keep their degree.
    assert torch.equal(floored[degrees >= 8], degrees[degrees >= 8])


def test_synthetic_dataset_rejects_bad_noise_and_degree_sigma() -> None:
    for noise in (1.0, 1.5, -0.1, math.nan):
        with pytest.raises(ValueError, match="noise_fraction"):
            synthetic_dataset(10, 10, interactions_per_user=5, noise_fraction=noise)
    with pytest.raises(TypeError, match="noise_fraction"):
        synthetic_dataset(10, 10, interactions_per_user=5, noise_fraction="0.3")  # type: ignore[arg-type]
    for sigma in (-0.5, math.inf):
        with pytest.raises(ValueError, match="degree_sigma"):
            synthetic_dataset(10, 10, interactions_per_user=5, degree_sigma=sigma)
    with pytest.raises(TypeError, match="degree_sigma"):
        synthetic_dataset(10, 10, interactions_per_user=5, degree_sigma=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_interactions must be >= 2"):
        synthetic_dataset(10, 10, interactions_per_user=5, min_interactions=1)
    with pytest.raises(ValueError, match="min_interactions must be <= interactions_per_user = 5"):
        synthetic_dataset(10, 10, interactions_per_user=5, min_interactions=6)
    with pytest.raises(TypeError, match="min_interactions"):
        synthetic_dataset(10, 10, interactions_per_user=5, min_interactions=3.0)  # type: ignore[arg-type]


def test_synthetic_dataset_names_the_argument_whose_value_overflows() -> None:
    # Finite values so large (or small) that the scores or degrees overflow float64: an
    # error naming the argument, not an OverflowError or a broken index.
    with pytest.raises(ValueError, match=r"degree_sigma must be <= 1e\+150, got 1e\+200"):
        synthetic_dataset(10, 10, interactions_per_user=5, degree_sigma=1e200)
    with pytest.raises(ValueError, match="popularity_alpha is too large for 10 items"):
        synthetic_dataset(10, 10, interactions_per_user=5, popularity_alpha=1e308)
    with pytest.raises(ValueError, match="temperature is too small"):
        synthetic_dataset(10, 10, interactions_per_user=5, temperature=1e-310)
    # Just inside the bounds: a valid index, and no overflow warning on the way.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for kwargs in ({"degree_sigma": 1e150}, {"popularity_alpha": 1e300}):
            index = synthetic_dataset(10, 10, interactions_per_user=5, **kwargs)  # type: ignore[arg-type]
            assert index.num_users == 10 and int(index.degree(torch.arange(10)).min()) >= 2


def recall_at_20(scores: np.ndarray, train: np.ndarray, valid: np.ndarray) -> float:
    """Mean Recall@20 over users with held-out items, training items excluded."""
    ranked = np.argsort(-np.where(train, -np.inf, scores), axis=1, kind="stable")[:, :20]
    hits = np.take_along_axis(valid, ranked, axis=1).sum(axis=1)
    held = valid.sum(axis=1)
    return float((hits[held > 0] / held[held > 0]).mean())


def dense(index: PositiveIndex) -> np.ndarray:
    matrix = np.zeros((index.num_users, index.num_items), dtype=bool)
    for user, items in enumerate(rows(index)):
        matrix[user, items] = True
    return matrix


def test_synthetic_dataset_is_learnable_by_low_rank_mf_beyond_popularity() -> None:
    # A rank-8 factorisation of the training matrix (PureSVD: deterministic and far
    # cheaper than training a BPR model) must rank held-out items much better than
    # popularity does, or the planted structure is too weak to be worth learning. The
    # top right singular vectors come from subspace iteration on X^T X: a full SVD
    # is slow where BLAS threads compete for a few cores.
    train_index, valid_index = holdout_split(synthetic_dataset(600, 300, seed=0), 0.2, seed=0)
    train, valid = dense(train_index), dense(valid_index)
    gram = train.T.astype(np.float64) @ train
    basis = np.random.default_rng(0).standard_normal((train.shape[1], 8))
    for _ in range(30):
        basis, _ = np.linalg.qr(gram @ basis)
    low_rank = train @ basis @ basis.T
    popularity = np.broadcast_to(train.sum(axis=0).astype(np.float64), train.shape)
    mf = recall_at_20(low_rank, train, valid)
    pop = recall_at_20(popularity, train, valid)
    assert mf > 2 * pop, (mf, pop)
