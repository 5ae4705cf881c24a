"""Configure logging from a YAML file; an ERROR pages the on-call phone.

    pip install pyyaml
    python examples/yaml_config.py

Without HUAWEICLOUD_SDK_AK the example pages a local FakeSMNServer instead of SMN.
"""

from __future__ import annotations

import logging.config
import sys
from pathlib import Path

from _local_smn import local_smn, show_phone

CONFIG = Path(__file__).with_name("logging.yaml")


def main() -> int:
    try:
        import yaml
    except ImportError:
        print("This example needs PyYAML: pip install pyyaml", file=sys.stderr)
        return 1
    with local_smn() as server:
        logging.config.dictConfig(yaml.safe_load(CONFIG.read_text(encoding="utf-8")))
        logging.getLogger("shop.inventory").error("stock sync failed: %d items out of date", 312)
        show_phone(server, *logging.getLogger().handlers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
