"""Reading a JSON document field by field, with errors that name the document and the field's path.

    f = Fields("image 'office'", "", data)
    f.int("size")  ->  ImageCorrupt("image 'office': manifest is malformed: size: expected a whole number, found '1'")
"""

from __future__ import annotations

import re
from collections.abc import Callable

from lifeboat.errors import ImageCorrupt

MISSING = object()
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


def is_digest(text: object) -> bool:
    return isinstance(text, str) and bool(_DIGEST_RE.match(text))


def what(value: object) -> str:
    """A value as an error shows it: short, and 'nothing' for a missing one."""
    if value is MISSING:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def checked_int(value: object, minimum: int, error: Callable[[str], Exception]) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise error(f"expected a whole number, found {what(value)}")
    if value < minimum:
        raise error(f"{value} is below {minimum}")
    return value


def checked_digest(value: object, error: Callable[[str], Exception]) -> str:
    if not is_digest(value):
        raise error(f"{what(value)} is not a sha256 digest (64 lower-case hex digits)")
    return value  # type: ignore[return-value]


class Fields:
    """One JSON object of a document. `where` names the document ("image 'office'"), `path` the object in it."""

    def __init__(self, where: str, path: str, data: object):
        self.where, self.path = where, path
        if not isinstance(data, dict):
            raise self.error(f"expected an object, found {what(data)}")
        self.data: dict = data

    def error_at(self, path: str, message: str) -> ImageCorrupt:
        return ImageCorrupt(f"{self.where}: manifest is malformed: {path or 'top level'}: {message}")

    def error(self, message: str, key: str | None = None) -> ImageCorrupt:
        return self.error_at(self.sub(key) if key else self.path, message)

    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, default: object = MISSING) -> object:
        value = self.data.get(key, default)
        if value is MISSING:
            raise self.error("missing", key)
        return value

    def str(self, key: str, default: object = MISSING, *, nonempty: bool = False) -> str:
        value = self.get(key, default)
        if not isinstance(value, str) or (nonempty and not value):
            raise self.error(f"expected {'a non-empty' if nonempty else 'a'} string, found {what(value)}", key)
        return value

    def int(self, key: str, default: object = MISSING, *, minimum: int = 0) -> int:
        return checked_int(self.get(key, default), minimum, lambda m: self.error(m, key))

    def digest(self, key: str) -> str:
        return checked_digest(self.get(key), lambda m: self.error(m, key))

    def obj(self, key: str, default: object = MISSING) -> Fields | None:
        value = self.get(key, default)
        return None if value is None else Fields(self.where, self.sub(key), value)

    def items(self, key: str, default: object = MISSING) -> list[tuple[str, object]]:
        """(path, element) for each element of the list at `key`."""
        value = self.get(key, default)
        if not isinstance(value, list):
            raise self.error(f"expected a list, found {what(value)}", key)
        return [(f"{self.sub(key)}[{i}]", item) for i, item in enumerate(value)]

    def objs(self, key: str, default: object = MISSING) -> list[Fields]:
        return [Fields(self.where, path, item) for path, item in self.items(key, default)]

    def tuples(self, key: str, names: tuple[str, ...], default: object = MISSING):
        """(error for that element, element) for each element of a list of fixed-size lists."""
        out = []
        for path, item in self.items(key, default):
            def error(message: str, path: str = path) -> ImageCorrupt:
                return self.error_at(path, message)

            if not isinstance(item, list) or len(item) != len(names):
                raise error(f"expected [{', '.join(names)}], found {what(item)}")
            out.append((error, item))
        return out
