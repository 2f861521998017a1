"""Reading interaction files, splitting them, and a planted synthetic dataset.

Every loader returns :class:`Interactions`: ``(user, item)`` pairs with contiguous
internal ids ``0..n-1`` plus the arrays that map internal ids back to the raw
ids of the file. :meth:`Interactions.to_index` turns them into a
:class:`~negsample.PositiveIndex`.

Formats (:func:`load` dispatches on ``format``):

========== ===================================== =================================
format     layout                                loader
========== ===================================== =================================
pickle     ``{user: iterable of items}``         :func:`load_pickle`
csv        ``UserId,ItemId`` then ``u,i i i``    :func:`load_competition_csv`
lightgcn   ``u i i i`` (one line per user)       :func:`load_lightgcn`
pairs      ``u i [rating ...]`` (one per line)   :func:`load_pairs`
========== ===================================== =================================

Id policy (the same for every loader):

* Raw ids from text files are strings. A string is an integer id when it is the
  canonical decimal form of an ``int64`` (``"7"``, ``"-3"``; not ``"07"`` or
  ``"+7"``). Pickled ids are the Python objects themselves.
* Users and items are mapped separately. If the ids are all non-negative
  integers forming exactly ``0..n-1`` they are kept (``user_ids`` is then
  ``arange(n)``). Otherwise they are renumbered ``0..n-1`` in sorted order of
  the raw ids: numeric order when all are integers (``user_ids`` is ``int64``),
  else the objects' own order, e.g. string order (``user_ids`` is an ``object``
  array). A text file that mixes integer and non-integer ids of one kind gets a
  warning, since its ids are then all sorted as strings; in a competition CSV,
  whose ids are integers, it is an error naming the file, line and id, unless
  ``string_ids=True`` reads every id as a string.
* In a competition CSV a user on several rows gets the items of all of them,
  with a warning that counts such users and their extra rows.
* Every id in the file gets an internal id, even where none of its pairs is
  kept (a user with an empty item list, pairs below a rating threshold).
* ``like=`` reuses the id maps of another :class:`Interactions` (say, the
  training file) so that a second file shares its id space. An id that is not
  in ``like``'s maps raises ``ValueError`` naming the file, line and id, unless
  ``unknown="drop"``: its pairs are then dropped and a warning says how many.
  Without ``like`` two files get independent maps: a test file in which some
  item never occurs would be renumbered differently from the training file.

Malformed input raises ``ValueError`` naming the file and the 1-based line
number, and showing the line. Blank lines are skipped; nothing else is.

The code lives in private modules (``_interactions``, ``_ids``, ``_loaders``,
``_submission``, ``_split``, ``_synthetic``); import it from ``negsample.data``.
"""

from __future__ import annotations

# The type aliases of the loaders' signatures, importable from here as before the split.
from negsample.data._common import PathLike as PathLike
from negsample.data._common import Unknown as Unknown
from negsample.data._interactions import Interactions
from negsample.data._loaders import (
    load,
    load_competition_csv,
    load_lightgcn,
    load_pairs,
    load_pickle,
)
from negsample.data._split import holdout_split
from negsample.data._submission import write_submission
from negsample.data._synthetic import synthetic_dataset

__all__ = [
    "Interactions",
    "holdout_split",
    "load",
    "load_competition_csv",
    "load_lightgcn",
    "load_pairs",
    "load_pickle",
    "synthetic_dataset",
    "write_submission",
]
