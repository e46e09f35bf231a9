"""The privacy stage: erasure of a person everywhere (``forget.py``) and retention."""
