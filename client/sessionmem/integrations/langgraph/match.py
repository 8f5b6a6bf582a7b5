"""The store's matching rules, pure: ``search``'s ``filter`` and ``list_namespaces``'
match conditions, as LangGraph's InMemoryStore decides them (the reference the
randomized test holds SessionmemStore to)."""

from __future__ import annotations

from typing import Any

from langgraph.store.base import MatchCondition


def does_match(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    """A prefix or suffix condition, ``*`` matching any one label."""
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    if condition.match_type == "prefix":
        pairs = zip(namespace, path)
    elif condition.match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path))
    else:
        raise ValueError(f"Unsupported match type: {condition.match_type}")
    return all(p == "*" or n == p for n, p in pairs)


def compare_values(item_value: Any, filter_value: Any) -> bool:
    """A filter value against an item's: nested objects key by key, lists element by
    element, ``{"$op": v}`` as a comparison (PostgreSQL JSONB's way)."""
    if isinstance(filter_value, dict):
        if any(key.startswith("$") for key in filter_value):
            return all(_apply_operator(item_value, op, v) for op, v in filter_value.items())
        if not isinstance(item_value, dict):
            return False
        return all(compare_values(item_value.get(key), v) for key, v in filter_value.items())
    if isinstance(filter_value, (list, tuple)):
        return (isinstance(item_value, (list, tuple)) and len(item_value) == len(filter_value)
                and all(compare_values(i, f) for i, f in zip(item_value, filter_value)))
    return bool(item_value == filter_value)


def _apply_operator(value: Any, operator: str, operand: Any) -> bool:
    if operator == "$eq":
        return bool(value == operand)
    if operator == "$ne":
        return bool(value != operand)
    if operator in ("$gt", "$gte", "$lt", "$lte"):
        a, b = float(value), float(operand)
        return {"$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[operator]
    raise ValueError(f"Unsupported operator: {operator}")
