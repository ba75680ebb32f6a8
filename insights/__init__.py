"""Product-development insights: rising demand, unmet search needs and review pain points.

Imports ``stream`` (contracts, settings), never ``training``. Nothing runs at import time.
"""
