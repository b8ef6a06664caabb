"""The whole system on one machine (``make run``): moto, the HTTP API, SQS pollers and a Segment sink.

Code run through the local stack imports the product's layer (function modules loaded in-process by
``local_stack.invoke``, the operator tools), so the layer's folder is put on ``sys.path`` here, as Lambda's runtime
puts the layer there for the functions. The Segment sink imports nothing from it: it follows Segment's
documented rules, not the forwarder's reading of them.
"""

import sys
from pathlib import Path

_LAYER = str(Path(__file__).resolve().parent.parent / "layers" / "forwarder")
if _LAYER not in sys.path:
    sys.path.append(_LAYER)
