"""``python -m agent`` runs the ``altiwatch`` CLI."""

import sys

from agent.cli import main

sys.exit(main())
