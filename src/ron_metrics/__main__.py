"""
``python -m ron_metrics`` runs the CLI.
"""

from __future__ import annotations

import sys

from ron_metrics.cli import main

if __name__ == "__main__":
    sys.exit(main())
