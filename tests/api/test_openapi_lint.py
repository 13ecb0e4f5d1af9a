"""docs/openapi.json passes `@redocly/cli lint` with its recommended rules: no errors.
The linter is an npm test peer (tests/api/js/package.json, installed by
scripts/test-peers.sh); it runs offline, from tests/api/js/node_modules."""

import os
import subprocess

import pytest

from conftest import REPO

pytestmark = pytest.mark.sqlite_only

REDOCLY = os.path.join(REPO, "tests", "api", "js", "node_modules", ".bin", "redocly")


def test_openapi_passes_redocly_recommended():
    assert os.access(REDOCLY, os.X_OK), "run scripts/test-peers.sh (npm ci in tests/api/js)"
    env = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true")
    proc = subprocess.run(
        [REDOCLY, "lint", "--extends=recommended", "--format=stylish",
         os.path.join(REPO, "docs", "openapi.json")],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert " error " not in out, out
