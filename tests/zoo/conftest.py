"""Models from the libraries users bring (the ``zoo`` extra), built from tiny configs with
random weights: never a hub download."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
