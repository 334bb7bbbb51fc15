"""`retouch-bot serve-api`: the embedded engine behind the hosted API's OpenAI-style HTTP contract.

The same request and response JSON, the same error shape, result files served from this server's
own URLs that expire after a configurable time, optional bearer keys, and a bounded work queue that
answers 429 at once when full. Built on aiohttp's web server; its settings (`SERVE_API_*`) are
declared here too.
"""

from bots.serve_api.app import create_app
from bots.serve_api.files import ResultStore
from bots.serve_api.run import run_server
from bots.serve_api.settings import ServeApiSettings

__all__ = ["ResultStore", "ServeApiSettings", "create_app", "run_server"]
