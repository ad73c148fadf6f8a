"""``wsgiref.validate.validator``, adjusted for ``wsgi.input_terminated``.

The validator insists on ``wsgi.input.read(size)``; with ``wsgi.input_terminated``
(which h2gate sets) an app may call ``read()`` without a size, and werkzeug does.
Everything else is checked as wsgiref does.
"""

from __future__ import annotations

from typing import Any
from wsgiref import validate


class _InputWrapper(validate.InputWrapper):
    def read(self, *args: Any) -> bytes:
        if not args:
            data = self.input.read()
            validate.assert_(type(data) is bytes)
            return data
        return super().read(*args)


validate.InputWrapper = _InputWrapper  # type: ignore[misc]


def validator(app: Any) -> Any:
    return validate.validator(app)
