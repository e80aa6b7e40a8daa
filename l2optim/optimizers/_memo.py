"""Memos of what a step works out from a param group, kept while the group is unchanged.

Every step, the optimizers decide per param group where the decay sits and which
implementation runs the update. On a small model that planning costs more than the
sums, so the plan of one step is kept for the next while nothing it was made from has
changed. "Unchanged" is decided by identity, never by value, so that it cannot be fooled:

* the group is the same dict, with the same keys in the same order, holding the same
  objects (a scheduler's new lr is a new float: a new plan);
* each of those objects is immutable (numbers, strings, None, tuples of them), apart
  from the group's lists of parameters and of their names; a group that holds anything
  else, a tensor lr for instance, is planned again at every step;
* its list of parameters holds the same tensors (appending, removing or replacing one
  is seen);
* the optimizer's state is the same dict (``load_state_dict`` replaces it).

A memo is not part of the optimizer's state: a copy starts without one, and plans the
same from the same group.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import is_
from typing import Any

__all__ = ["GroupMemo", "same_objects"]

_IMMUTABLE = frozenset({type(None), bool, int, float, str})
#: Entries that are lists the user may change in place. A plan reads the tensors of
#: "params" (compared one by one), and never reads the names.
_LISTS = frozenset({"params", "param_names"})
#: The types a number-only entry (see ``GroupMemo.of``) may take without a new plan.
_NUMBERS = (int, float)


def same_objects(items: Sequence[Any], seen: Sequence[Any]) -> bool:
    """Whether ``items`` holds the very objects of ``seen`` (not equal ones), in order."""
    return len(items) == len(seen) and all(map(is_, items, seen))


def _immutable(value: Any) -> bool:
    if type(value) is tuple:
        return all(map(_immutable, value))
    return type(value) in _IMMUTABLE


class GroupMemo:
    """``value``, worked out from a param group, with what it was worked out from."""

    __slots__ = ("group", "keys", "values", "params", "state", "value", "number_at")

    def __init__(
        self, group: dict[str, Any], state: Any, value: Any, number_at: int | None
    ) -> None:
        self.group = group
        self.keys = tuple(group)
        self.values = tuple(group.values())
        self.params = tuple(group["params"])
        self.state = state
        self.value = value
        self.number_at = number_at

    @classmethod
    def of(
        cls, group: dict[str, Any], state: Any, value: Any, number_key: str | None = None
    ) -> GroupMemo | None:
        """A memo of ``value``, or None where the group holds an object that may change in
        place. ``number_key`` names an entry whose value ``value`` does not depend on as
        long as it is a Python number (a plan that does not read the lr's value)."""
        if not all(key in _LISTS or _immutable(v) for key, v in group.items()):
            return None
        number_at = None if number_key is None else list(group).index(number_key)
        return cls(group, state, value, number_at)

    def fits(self, group: dict[str, Any], state: Any) -> bool:
        """Whether ``value`` still holds for ``group`` and the optimizer's ``state``."""
        # C-level loops only, and no copies: this runs for every group at every step.
        params = group["params"]
        if (
            self.group is group
            and self.state is state
            and len(group) == len(self.keys)
            and len(params) == len(self.params)
            and all(map(is_, group.values(), self.values))
            and all(map(is_, group, self.keys))
            and all(map(is_, params, self.params))
        ):
            return True
        return self._fits_another_number(group, state)

    def _fits_another_number(self, group: dict[str, Any], state: Any) -> bool:
        """Whether only the number-only entry differs, and only by holding another number."""
        i = self.number_at
        if i is None or len(group) != len(self.keys):
            return False
        number = tuple(group.values())[i]
        if type(number) not in _NUMBERS:
            return False
        seen = self.values
        self.values = (*seen[:i], number, *seen[i + 1 :])
        self.number_at = None  # compare once more with the new number, without this path
        try:
            fits = self.fits(group, state)
        finally:
            self.number_at = i
        if not fits:
            self.values = seen
        return fits  # when it fits, the next step compares with this one's objects
