"""A Python FrameX plugin for FrameX for Rust's interoperability tests.

Python-side proxy functions (`describe`, `fail`) are registered here for a Rust
instance to call. `rust_describe` and `rust_fail` are listed for the Rust
instance in this side's configuration, and `POST /api/v1/call_rust` calls them,
so a test can make Python call Rust.

The process exits when its standard input closes, so it never outlives the
test process that started it, even if that one is killed.
"""

import os
import sys
import threading
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


@on_proxy()
async def describe(value: Any) -> Any:
    return {"echo": value, "by": "python", "pid": os.getpid()}


@on_proxy()
async def fail(message: str) -> Any:
    raise ValueError(message)


@on_proxy()
async def rust_describe(value: Any) -> Any:
    raise RuntimeError("interop_plugin.rust_describe must run on the Rust instance")


@on_proxy()
async def rust_fail(message: str) -> Any:
    raise RuntimeError("interop_plugin.rust_fail must run on the Rust instance")


class CallRust(BaseModel):
    function: str
    kwargs: dict[str, Any]


@on_register()
class InteropPlugin(BasePlugin):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        await register_proxy_func(describe)
        await register_proxy_func(fail)

    @on_request("/call_rust", methods=["POST"])
    async def call_rust(self, model: CallRust) -> Any:
        functions = {"rust_describe": rust_describe, "rust_fail": rust_fail}
        return await functions[model.function](**model.kwargs)
