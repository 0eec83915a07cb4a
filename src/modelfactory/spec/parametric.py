"""A block definition with parameters: ``{params: {...}, body: node}``.

Its parameters are in scope while its body is validated (``{param: x}``,
``{expr: "..."}``, ``when:``); a default may compute from the parameters
declared before it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, ValidationError, ValidationInfo, model_validator

from .placeholders import default_issues
from .program import IDENTIFIER
from .validation import Frozen, inner_scope, mapping_keys, problem, raise_problems, raise_with

if TYPE_CHECKING:
    from .nodes import Node

__all__ = ["ParametricBlock"]


class ParametricBlock(Frozen):
    """A block definition with parameters: ``{params: {planes: 64}, body: node}``.

    Inside ``body``, ``{param: planes}`` stands for the value given at each use
    (``{block: Name, with: {planes: 128}}``); a param without a default
    (``null``) must be given. Only allowed directly under ``blocks:``.
    """

    params: dict[Annotated[str, Field(pattern=IDENTIFIER.pattern)], Any] = Field(
        default_factory=dict
    )
    body: Node

    @model_validator(mode="wrap")
    @classmethod
    def _params_scope(cls, data: Any, handler: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return handler(data)
        defaults = [problem(*issue) for issue in default_issues(data.get("params"))]
        with inner_scope(info, params=mapping_keys(data.get("params"))):
            try:
                block = handler(data)
            except ValidationError as err:
                raise_with("ParametricBlock", err, defaults)
        raise_problems("ParametricBlock", defaults)
        return block

    def required(self) -> frozenset[str]:
        """Parameters without a default (written ``name: null``)."""
        return frozenset(k for k, v in self.params.items() if v is None)
