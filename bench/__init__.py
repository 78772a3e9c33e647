"""fnhost's hot-path benchmark suite (issue 4). Run it with ``python -m bench``; see bench/README.md.

A benchmark in a checkout measures that checkout's fnhost, not whichever copy pip last installed
in editable mode (on a shared machine that may be another clone): its ``daemon/`` goes first on
the import path, unless a caller (``fnhost bench``) has already imported fnhost, which is then
the one measured. Every process the bench starts gets the same path (``functions.child_env``).
"""

import sys
from pathlib import Path

_DAEMON = Path(__file__).resolve().parents[1] / "daemon"
if "fnhost" not in sys.modules and (_DAEMON / "fnhost").is_dir() and str(_DAEMON) not in sys.path:
    sys.path.insert(0, str(_DAEMON))
