"""A person's identity graph: every id linked to the ids an erasure names.

Ids are linked when one event carried both (an anonymous id and the user id it was identified
as: ``identify``, or any event sent after sign-in), when convert's ``identities`` table links
them, or when a profile or the high-level index lists them together. Forgetting "a person" means
forgetting the whole connected component: a user id with the anonymous ids of each browser it
signed in from, and the stitched person id analyze keys profiles by (the user id, else the
anonymous id). Union-find keeps it linear in the edges.
"""

from __future__ import annotations

from collections.abc import Iterable


class Graph:
    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def _find(self, x: str) -> str:
        parent = self._parent
        root = x
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def link(self, a: str, b: str) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self._parent[ra] = rb

    def link_all(self, pairs: Iterable[tuple[str | None, str | None]]) -> None:
        for a, b in pairs:
            if a and b:
                self.link(a, b)

    def component(self, ids: Iterable[str]) -> set[str]:
        """Every id linked to any of ``ids`` (themselves included)."""
        wanted = {self._find(i) for i in ids}
        return {x for x in list(self._parent) if self._find(x) in wanted} | set(ids)
