"""Route templates of HTTP triggers (`tickets/{id}`, `files/{*path}`, `items/{id?}`) as regexes.

Literal segments outrank parameters and parameters outrank catch-alls, as in the host's
ASP.NET routing, so `tickets/summary` wins over `tickets/{id}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PARAM = re.compile(r"^\{(?P<star>\*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::[^}?]+)?(?P<optional>\?)?\}$")


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    pattern: re.Pattern[str] = field(compare=False)
    precedence: tuple[int, ...] = field(compare=False)

    @classmethod
    def parse(cls, prefix: str, template: str) -> RouteTemplate:
        segments = [s for s in f"{prefix.strip('/')}/{template.strip('/')}".split("/") if s]
        regex = ""
        ranks: list[int] = []
        for segment in segments:
            match = _PARAM.match(segment)
            if match is None:
                regex += "/" + re.escape(segment)
                ranks.append(0)
            elif match.group("star"):
                regex += f"(?:/(?P<{match.group('name')}>.*))?"
                ranks.append(2)
            elif match.group("optional"):
                regex += f"(?:/(?P<{match.group('name')}>[^/]+))?"
                ranks.append(1)
            else:
                regex += f"/(?P<{match.group('name')}>[^/]+)"
                ranks.append(1)
        return cls(template, re.compile(f"^{regex or '/'}/?$"), tuple(ranks))

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.match(path)
        if found is None:
            return None
        return {key: value for key, value in found.groupdict().items() if value is not None}
