"""The seed's `your_module.build_report`, served by a Python FrameX.

A Rust FrameX instance that lists `your_module.build_report` for this one's
URL runs its calls here, with the same call in its code; the report says which
instance made it, as the Rust demo's does.
"""

import os
import socket
from typing import Any

from framex.consts import VERSION
from framex.plugin import BasePlugin, PluginMetadata, on_proxy, on_register, register_proxy_func

__plugin_meta__ = PluginMetadata(
    name="your_module",
    version=VERSION,
    description="The seed's report function, in Python",
    author="FrameX for Rust",
    url="https://example.invalid/framex-rs",
)


@on_proxy()
async def build_report(job_id: str) -> Any:
    if not job_id:
        raise ValueError("job_id must not be empty")
    return {
        "job_id": job_id,
        "status": "done",
        "made_by": {
            "instance": os.environ.get("FRAMEX_INSTANCE", "python"),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        },
    }


@on_register()
class YourModule(BasePlugin):
    async def on_start(self) -> None:
        # Offered to other instances at /api/v1/proxy/remote.
        await register_proxy_func(build_report)
