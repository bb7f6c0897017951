"""What the decorators recorded. It outlives DBOS instances (as DBOS's registry does), so a
function decorated once works in every DBOS launched later in the process, and one decorated
after launch is bound to the running instance at once."""
import functools
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional


@dataclass(eq=False)
class Registration:
    kind: str  # "workflow", "step" or "transaction"
    fn: Callable[..., Any]
    name: str
    options: Dict[str, Any] = field(default_factory=dict)


class Registry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.functions: List[Registration] = []
        self.queues: Dict[str, Any] = {}  # name -> Queue
        self.scheduled: List[tuple] = []  # (Registration, cron)
        self.listeners: List[Callable[[Registration], None]] = []

    def add(self, reg: Registration) -> None:
        with self.lock:
            self.functions.append(reg)
            listeners = list(self.listeners)
        for bind in listeners:  # a launched instance binds it now
            bind(reg)

    def by_name(self, name: str) -> Optional[Registration]:
        return next((r for r in self.functions if r.kind == "workflow" and r.name == name), None)


registry = Registry()


def reset() -> None:
    global registry
    registry = Registry()


def registration_of(fn: Any) -> Optional[Registration]:
    return getattr(fn, "_pgwf_dbos", None)


def wrap(reg: Registration, call: Callable[..., Any]) -> Callable[..., Any]:
    """The function the user's module keeps: it calls `call(reg, args, kwargs)` at call time,
    so it follows whichever DBOS instance is live."""

    @functools.wraps(reg.fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return call(reg, args, kwargs)

    wrapper._pgwf_dbos = reg  # type: ignore[attr-defined]
    return wrapper
