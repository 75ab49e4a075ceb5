"""Code run first in a fresh interpreter to record every framework an import *tries* to load.

Checking ``sys.modules`` afterwards proves nothing where the frameworks are not installed (the framework-free
env): the import fails quietly or is skipped. A finder at the head of ``sys.meta_path`` sees the attempt
itself, installed or not, so these checks hold in every env.
"""

FRAMEWORKS = ("torch", "torchvision", "timm", "transformers", "keras", "tensorflow", "jax", "h5py", "safetensors",
              "ml_dtypes")

RECORDER = f"""
import sys
class _Attempts:
    seen = set()
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {FRAMEWORKS!r}:
            self.seen.add(name.split(".")[0])
        return None
_attempts = _Attempts()
sys.meta_path.insert(0, _attempts)
"""

REPORT = "\nimport json\nprint(json.dumps(sorted(_attempts.seen)))\n"


def attempted(run_python, code: str) -> list[str]:
    """The frameworks ``code`` tried to import, run in a fresh interpreter by conftest's ``run_python``."""
    import json

    result = run_python(RECORDER + code + REPORT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
