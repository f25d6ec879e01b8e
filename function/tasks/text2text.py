"""summarization, translation and fill-mask: text in, one text (or candidates) out."""

from __future__ import annotations

from typing import Any, ClassVar

from function.tasks.base import Task, records, single


class _SingleText(Task):
    """Answers `[{<key>: str}]`; the result is the object."""

    key: ClassVar[str]

    def recognizes(self, body: Any) -> bool:
        return single(body, self.key) is not None

    def parse(self, body: Any) -> Any:
        answer = single(body, self.key)
        if answer is None:
            raise self.unexpected(body)
        return {self.key: answer[self.key]}


class Summarization(_SingleText):
    name = "summarization"
    key = "summary_text"


class Translation(_SingleText):
    name = "translation"
    key = "translation_text"


class FillMask(Task):
    name = "fill-mask"
    _keys = ("sequence", "score", "token", "token_str")

    def recognizes(self, body: Any) -> bool:
        return bool(records(body, *self._keys))

    def parse(self, body: Any) -> Any:
        items = records(body, *self._keys)
        if items is None:
            raise self.unexpected(body)
        return items
