"""``python -m smn_alert``: the ``smn-alert`` command."""

from __future__ import annotations

import sys

from smn_alert._cli import main

if __name__ == "__main__":
    sys.exit(main())
