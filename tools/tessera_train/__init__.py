"""The training library behind tools/tessera-train, tools/gpt-replay and tools/bench-python
(config, data, models, checkpoints, the loop; text.py, gpt_task.py and profile.py: the
gpt-char task), and the interpreter check those scripts run first."""
import os
import sys


def ensure_numpy_python(script, name):
    """Runs `script` again, with the same arguments, under $PYTHON (default /usr/bin/python3)
    when this interpreter lacks numpy or is older than 3.9 (the `python3` on PATH may be a bare
    one). Call it before anything imports numpy; `name` goes into the error message."""
    try:
        import numpy  # noqa: F401
        if sys.version_info >= (3, 9):
            return
    except ImportError:
        pass
    python = os.environ.get("PYTHON") or "/usr/bin/python3"
    if os.environ.get("TESSERA_PY_REEXEC") or not os.path.exists(python):  # tried once already
        sys.exit(f"{name}: {sys.executable} has no numpy (or is older than 3.9), nor does {python}; "
                 f"install python3-numpy (tools/setup-deps does) or set $PYTHON")
    os.environ["TESSERA_PY_REEXEC"] = "1"
    os.execv(python, [python, os.path.abspath(script)] + sys.argv[1:])
