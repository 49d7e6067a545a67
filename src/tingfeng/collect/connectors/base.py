"""The connector contract and registry.

A connector is a small class: a pydantic model validating its configuration (stored as JSON on
the `Source`), and `collect(ctx)` yielding `RawItem`s. It keeps any cursor it needs in
`ctx.state`, which is saved with the source after a run that did not fail, so a crash repeats
a run rather than skipping items (the store ignores items it already holds).
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ValidationError

from tingfeng.collect.errors import ConfigError
from tingfeng.collect.items import ItemError, RawItem

if TYPE_CHECKING:
    from tingfeng.collect.fetcher import Fetcher

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _nothing_known(_key: str) -> bool:
    return False


@dataclass
class CollectContext:
    """What a connector gets for one run."""

    fetcher: Fetcher | None = None
    state: dict[str, Any] = field(default_factory=dict)
    now: Callable[[], datetime] = _utc_now
    # True when an item with this URL (or external id) is already stored for the source;
    # list-page connectors use it to stop paging at items already seen.
    is_known: Callable[[str], bool] = _nothing_known
    limit: int | None = None
    source_name: str = ""


class Connector(ABC):
    """Base class of every connector."""

    kind: ClassVar[str]
    title: ClassVar[str] = ""
    Config: ClassVar[type[BaseModel]]
    # A connector that needs no network (imports, replay) sets this to False.
    uses_network: ClassVar[bool] = True

    def __init__(self, config: BaseModel) -> None:
        self.config = config

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> Connector:
        try:
            config = cls.Config.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigError(f"Invalid configuration for a {cls.kind} source: {problems}") from exc
        return cls(config)

    @abstractmethod
    def collect(self, ctx: CollectContext) -> Iterator[RawItem | ItemError]:
        """Yield the items found in this run."""


_REGISTRY: dict[str, type[Connector]] = {}

# Modules holding the built-in connectors, imported on first use rather than at import time.
BUILTIN_MODULES = (
    "tingfeng.collect.connectors.feed",
    "tingfeng.collect.connectors.board",
    "tingfeng.collect.connectors.site_search",
    "tingfeng.collect.connectors.json_api",
    "tingfeng.collect.connectors.imports",
    "tingfeng.collect.connectors.replay",
    "tingfeng.collect.connectors.push",
    "tingfeng.collect.connectors.lead",
)


def register(cls: type[Connector]) -> type[Connector]:
    """Class decorator adding a connector to the registry under its `kind`."""
    _REGISTRY[cls.kind] = cls
    return cls


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def connector_kinds() -> dict[str, type[Connector]]:
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


def get_connector(kind: str, config: dict[str, Any]) -> Connector:
    kinds = connector_kinds()
    if kind not in kinds:
        raise ConfigError(f"Unknown source kind {kind!r}; choose one of: {', '.join(kinds)}.")
    return kinds[kind].from_config(config)
