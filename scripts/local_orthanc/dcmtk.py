"""Find dcmtk's command-line tools, never pynetdicom's namesakes.

pynetdicom installs console scripts called ``findscu``, ``storescu``, ``storescp``... into the
virtual environment; with the environment first on ``PATH`` a test meaning to use dcmtk
would silently run pynetdicom against pynetdicom.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def tool(name: str) -> str:
    """The path of dcmtk's ``name``; raises FileNotFoundError with the install hint."""
    venv_bin = Path(sys.prefix, "bin").resolve()
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/local/bin"]:
        if not folder or Path(folder).resolve() == venv_bin:
            continue
        found = shutil.which(name, path=folder)
        if found:
            return found
    raise FileNotFoundError(f"dcmtk's {name} is not installed (apt-get install dcmtk)")
