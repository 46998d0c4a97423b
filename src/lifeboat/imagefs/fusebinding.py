"""fusepy, under whichever module name it was installed as.

PyPI's fusepy installs the module `fuse`; Debian's python3-fusepy (the live ISO's) renames it `fusepy`,
because Debian's python3-fuse already owns `fuse`. Both are the same code; one of them must be there.
"""

from __future__ import annotations

import importlib
import importlib.util

_NAME = "fusepy" if importlib.util.find_spec("fusepy") is not None else "fuse"
_module = importlib.import_module(_NAME)

FUSE = _module.FUSE
FuseOSError = _module.FuseOSError
Operations = _module.Operations
