"""Placeholder for ``make run`` until the service exists: show the tool."""

import subprocess
import sys
from pathlib import Path

wxpay = str(Path(sys.executable).with_name("wxpay"))
sys.exit(subprocess.call([wxpay, "--help"]))
