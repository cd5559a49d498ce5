"""`python -m carbon_sensors.cli`: the same as the `carbon-aware` console script."""

import sys

from carbon_sensors.cli import main

sys.exit(main())
