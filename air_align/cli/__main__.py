"""``python -m air_align.cli …`` (what ``accelerate launch -m air_align.cli`` runs)."""

import sys

from air_align.cli import main

sys.exit(main())
