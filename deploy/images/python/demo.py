"""`demo.whoami` of the Rust demo, called from Python.

The function body never runs here: this instance's configuration lists
`demo.whoami` for a Rust FrameX, so the call goes there. `GET
/api/v1/python/whoami` makes that call and answers with what came back: the
Rust instance that ran it.
"""

from typing import Any

from framex.consts import VERSION
from framex.plugin import BasePlugin, PluginMetadata, on_proxy, on_register, on_request

__plugin_meta__ = PluginMetadata(
    name="demo",
    version=VERSION,
    description="Calls the Rust demo's demo.whoami",
    author="FrameX for Rust",
    url="https://example.invalid/framex-rs",
)


@on_proxy()
async def whoami() -> Any:
    raise RuntimeError("demo.whoami runs on the Rust instance this one lists it for")


@on_register()
class Demo(BasePlugin):
    @on_request("/python/whoami")
    async def who(self) -> Any:
        return {"ran_on": await whoami()}
