"""The whole system on one machine (``make run``): moto, the HTTP API, SQS pollers and a Segment sink.

The sink shares the product's definition of Segment's message size and ids (``segment_forwarder.messages``),
so the layer's folder is put on ``sys.path`` here, as Lambda's runtime puts the layer there for the functions.
"""

import sys
from pathlib import Path

_LAYER = str(Path(__file__).resolve().parent.parent / "layers" / "forwarder")
if _LAYER not in sys.path:
    sys.path.append(_LAYER)
