"""Carbon-Aware-Trainer's Prefect collection: credential blocks, carbon-aware waits and training tasks.

Registered through the `prefect.collections` entry point, so `prefect block register` finds its blocks.
"""

__version__ = "0.1.0"
