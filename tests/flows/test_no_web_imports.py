"""The flows are not web code: importing every deployment's flow loads no Flask or Werkzeug."""

from __future__ import annotations

import subprocess
import sys

from tutormax.settings import PROJECT_ROOT


def test_importing_every_flow_loads_no_web_framework():
    probe = ("import sys; from flows.registry import load_all_flows; load_all_flows(); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug', 'gunicorn')))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
