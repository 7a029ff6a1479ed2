"""
Supply-chain checks of the locked runtime dependencies, offline.

1. Install requirements/runtime.lock (hash-checked) into .venv-runtime.
2. CycloneDX SBOM of that environment -> sbom/runtime.cdx.json (validated).
3. License allowlist: every runtime package's license must be on ALLOWED.

pip-audit is deliberately not run: it cannot reach a vulnerability service from
this network and then reports a false "no known vulnerabilities" (PEERS.md).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_VENV = ROOT / ".venv-runtime"
LOCK = ROOT / "requirements" / "runtime.lock"
SBOM = ROOT / "sbom" / "runtime.cdx.json"
TOOLS = Path(sys.executable).parent

# SPDX ids and the classifier spellings pip-licenses reports for them.
ALLOWED = {
    "MIT",
    "MIT License",
    "BSD",
    "BSD License",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "3-Clause BSD License",
    "Apache-2.0",
    "Apache Software License",
    "Apache License 2.0",
    "PSF-2.0",
    "Python Software Foundation License",
    "ISC",
    "ISC License (ISCL)",
    "MPL-2.0",
    "Mozilla Public License 2.0 (MPL 2.0)",
    "CC0-1.0",
}


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def ensure_runtime_venv() -> Path:
    python = RUNTIME_VENV / "bin" / "python"
    stamp = RUNTIME_VENV / ".stamp"
    if not (stamp.exists() and stamp.stat().st_mtime > LOCK.stat().st_mtime):
        venv.create(RUNTIME_VENV, with_pip=True, clear=True)
        run(
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--require-hashes",
            "-r",
            str(LOCK),
        )
        stamp.touch()
    return python


def license_ok(expression: str) -> bool:
    # "A OR B": one allowed alternative suffices; "A AND B": all must be allowed.
    if " OR " in expression:
        return any(license_ok(part) for part in expression.split(" OR "))
    parts = [part.strip() for part in re.split(r" AND |;", expression)]
    parts = [p[1:-1] if p.startswith("(") and p.endswith(")") else p for p in parts]
    return all(part in ALLOWED for part in parts if part)


def main() -> int:
    python = ensure_runtime_venv()
    SBOM.parent.mkdir(exist_ok=True)
    run(
        str(TOOLS / "cyclonedx-py"),
        "environment",
        "--of",
        "JSON",
        "--validate",
        "--output-reproducible",
        "-o",
        str(SBOM),
        str(python),
    )
    components = json.loads(SBOM.read_text())["components"]
    print(
        f"SBOM: {SBOM.relative_to(ROOT)} ({len(components)} components, CycloneDX, validated)"
    )
    packages = json.loads(
        run(
            str(TOOLS / "pip-licenses"),
            "--python",
            str(python),
            "--format=json",
            "--from=mixed",
        )
    )
    refused = [
        f"{p['Name']} ({p['License']})"
        for p in packages
        if p["Name"] not in {"pip", "setuptools"} and not license_ok(p["License"])
    ]
    if refused:
        print(
            "licenses not on the allowlist:\n  " + "\n  ".join(refused), file=sys.stderr
        )
        return 1
    print(f"licenses: {len(packages)} runtime packages, all on the allowlist")
    print("pip-audit: NOT RUN - no vulnerability service is reachable here; not a pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
