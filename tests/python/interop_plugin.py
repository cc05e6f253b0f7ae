"""A Python FrameX plugin for FrameX for Rust's interoperability tests.

Python-side proxy functions (`describe`, `inspect`, `make`, `fail`) are
registered here for a Rust instance to call. The `rust_*` functions are listed
for Rust instances in this side's configuration; `POST /api/v1/call_rust`
calls one of them with keyword arguments Python builds itself (`CASES`), so a
test can make Python call Rust with values that only Python writes (NaN,
integers past 64 bits, pydantic models), and reports what came back or what
was raised, as Python sees it.

The process exits when its standard input closes, so it never outlives the
test process that started it, even if that one is killed.
"""

import math
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from framex.consts import VERSION
from framex.plugin import BasePlugin, PluginMetadata, on_proxy, on_register, on_request, register_proxy_func

__plugin_meta__ = PluginMetadata(
    name="interop_plugin",
    version=VERSION,
    description="FrameX for Rust interoperability tests",
    author="FrameX for Rust",
    url="https://example.invalid/framex-rs",
)


def _exit_when_stdin_closes() -> None:
    sys.stdin.read()
    os._exit(0)


threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()


class Address(BaseModel):
    city: str


class User(BaseModel):
    name: str
    age: int
    address: Address


@dataclass
class Point:
    x: float
    y: float


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


# Values Python builds and sends, by name.
CASES: dict[str, Any] = {
    "2^64": lambda: 2**64,
    "-2^63-1": lambda: -(2**63) - 1,
    "10^30": lambda: 10**30,
    "a 300-digit integer": lambda: int("7" * 300),
    "2^70": lambda: 2**70,
    "nan": lambda: float("nan"),
    "inf": lambda: float("inf"),
    "-inf": lambda: float("-inf"),
    "floats": lambda: [1e16, 1e-05, 0.1, -0.0, 5e-324, 1.7976931348623157e308],
    "mixed": lambda: {"nan": float("nan"), "big": 10**30, "list": [float("-inf"), -(2**64)]},
    "key order": lambda: {"zeta": 1, "alpha": 2, "mid": {"b": [], "a": {}}, "": None},
    # About the deepest Python FrameX's own encoder reaches: 320 levels from
    # a request handler, 450 when it answers a call (its recursion limit).
    "320 levels": lambda: nested(320),
    "400 levels": lambda: nested(400),
    "a pydantic model": lambda: User(name="ada", age=36, address=Address(city="Paris")),
    "a list of pydantic models": lambda: [User(name="ada", age=36, address=Address(city="Paris")), User(name="bob", age=7, address=Address(city="Oslo"))],
    "a dataclass": lambda: Point(x=1.5, y=-2.0),
    "a string": lambda: "x",
}


def same(a: Any, b: Any) -> bool:
    """Equal as values, NaN equal to NaN, dict keys in the same order."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


def depth(value: Any) -> int:
    level = 0
    while isinstance(value, (list, dict)) and value:
        value = value[0] if isinstance(value, list) else next(iter(value.values()))
        level += 1
    return level


def described(value: Any) -> dict[str, Any]:
    """What Python holds, in terms a JSON answer can carry exactly."""
    return {
        "type": type(value).__name__,
        "repr": repr(value) if depth(value) < 50 else f"<{depth(value)} levels>",
        "keys": list(value) if isinstance(value, dict) else None,
        "depth": depth(value),
    }


@on_proxy()
async def describe(value: Any) -> Any:
    return {"echo": value, "by": "python", "pid": os.getpid()}


@on_proxy()
async def inspect(value: Any) -> Any:
    return described(value)


@on_proxy()
async def make(case: str) -> Any:
    return CASES[case]()


@on_proxy()
async def fail(message: str) -> Any:
    raise ValueError(message)


# Listed for Rust instances in this side's configuration: these bodies never run.
@on_proxy()
async def rust_describe(value: Any) -> Any:
    raise RuntimeError("interop_plugin.rust_describe must run on the Rust instance")


@on_proxy()
async def rust_fail(message: str) -> Any:
    raise RuntimeError("interop_plugin.rust_fail must run on the Rust instance")


@on_proxy()
async def rust_u64(n: Any) -> Any:
    raise RuntimeError("interop_plugin.rust_u64 must run on the Rust instance")


@on_proxy()
async def rust_f64(x: Any) -> Any:
    raise RuntimeError("interop_plugin.rust_f64 must run on the Rust instance")


@on_proxy()
async def rust_keys(value: Any) -> Any:
    raise RuntimeError("interop_plugin.rust_keys must run on the Rust instance")


@on_proxy()
async def rust_user() -> Any:
    raise RuntimeError("interop_plugin.rust_user must run on the Rust instance")


@on_proxy()
async def rust_missing() -> Any:
    raise RuntimeError("interop_plugin.rust_missing must run on the Rust instance")


@on_proxy()
async def rust_locked() -> Any:
    raise RuntimeError("interop_plugin.rust_locked must run on the locked Rust instance")


RUST_FUNCTIONS = {
    "rust_describe": rust_describe,
    "rust_fail": rust_fail,
    "rust_u64": rust_u64,
    "rust_f64": rust_f64,
    "rust_keys": rust_keys,
    "rust_user": rust_user,
    "rust_missing": rust_missing,
    "rust_locked": rust_locked,
}


class CallRust(BaseModel):
    function: str
    kwargs: dict[str, Any] = {}
    # Keyword arguments built here from `CASES`: parameter name -> case name.
    cases: dict[str, str] = {}


@on_register()
class InteropPlugin(BasePlugin):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        for function in (describe, inspect, make, fail):
            await register_proxy_func(function)

    @on_request("/call_rust", methods=["POST"])
    async def call_rust(self, model: CallRust) -> Any:
        kwargs = dict(model.kwargs)
        kwargs.update({name: CASES[case]() for name, case in model.cases.items()})
        try:
            result = await RUST_FUNCTIONS[model.function](**kwargs)
        except Exception as error:
            return {"raised": type(error).__name__, "message": str(error)}
        sent = {name: kwargs[name] for name in model.cases}
        echoed = result.get("echo") if isinstance(result, dict) else None
        return {
            "returned": described(result),
            "result": result if depth(result) < 50 and not has_nan(result) else None,
            "echo_is_sent": [same(value, echoed) for value in sent.values()],
        }


def has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(has_nan(v) for v in value)
    return False
