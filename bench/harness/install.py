# -*- test-case-name: tests.test_bench_harness -*-
"""
Installing what a run needs when it is missing: Debian packages with
C{apt-get} (only when running as root), matplotlib with pip (only when a
chart is asked for), and a PyPy virtualenv holding linkerpy (only with
C{--pypy}).  Everything installed is reported.

While apt-get runs, a temporary C{/usr/sbin/policy-rc.d} (created only if
none exists, removed afterwards) stops Debian from starting the freshly
installed system nginx or HAProxy services on their default ports.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from typing import Callable, Dict, Iterable, List, Optional

#: Debian package providing each binary the harness runs.
DEBIAN_PACKAGES = {
    "nginx": "nginx",
    "haproxy": "haproxy",
    "wrk": "wrk",
    "iperf3": "iperf3",
    "openssl": "openssl",
    "taskset": "util-linux",
    "pypy3": "pypy3",
}

_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_POLICY_RC = "/usr/sbin/policy-rc.d"

Log = Callable[[str], None]


def which(binary: str) -> Optional[str]:
    """
    Find C{binary} on C{PATH} or in the sbin directories (nginx and HAProxy
    live in C{/usr/sbin}, often off a non-root C{PATH}).
    """
    found = shutil.which(binary)
    if found:
        return found
    for d in _SBIN:
        candidate = os.path.join(d, binary)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _aptInstall(packages: List[str], log: Log) -> bool:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    createdPolicy = False
    if not os.path.exists(_POLICY_RC):
        with open(_POLICY_RC, "w") as f:
            f.write("#!/bin/sh\n# Temporary: linkerpy bench harness, no service starts.\nexit 101\n")
        os.chmod(_POLICY_RC, 0o755)
        createdPolicy = True
    try:
        install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
        proc = subprocess.run(install, env=env, capture_output=True, timeout=900)
        if proc.returncode != 0:
            log("apt-get install failed; running apt-get update and retrying")
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
            proc = subprocess.run(install, env=env, capture_output=True, timeout=900)
        if proc.returncode != 0:
            log("apt-get install failed: " + proc.stderr.decode("utf-8", "replace").strip()[-400:])
            return False
        return True
    except (OSError, subprocess.TimeoutExpired) as e:
        log(f"apt-get could not run: {e}")
        return False
    finally:
        if createdPolicy:
            os.unlink(_POLICY_RC)


def ensureBinaries(binaries: Iterable[str], log: Log, allowInstall: bool = True) -> Dict[str, Optional[str]]:
    """
    Locate each binary, installing the missing ones' Debian packages with
    apt-get when running as root.

    @return: binary name to path, L{None} for those still missing.
    """
    wanted = list(dict.fromkeys(binaries))
    missing = [b for b in wanted if which(b) is None]
    if missing:
        packages = sorted({DEBIAN_PACKAGES.get(b, b) for b in missing})
        canInstall = allowInstall and hasattr(os, "geteuid") and os.geteuid() == 0 and which("apt-get")
        if canInstall:
            log(f"installing with apt-get: {' '.join(packages)}")
            if _aptInstall(packages, log):
                log(f"installed: {' '.join(packages)}")
        else:
            log(f"missing (not installing: {'--no-install given' if not allowInstall else 'not root'}): "
                f"{' '.join(missing)}")
    return {b: which(b) for b in wanted}


def ensureMatplotlib(log: Log) -> bool:
    """
    Make C{matplotlib} importable, installing it with pip if needed.
    """
    if importlib.util.find_spec("matplotlib") is not None:
        return True
    log("installing matplotlib with pip (for --chart)")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"], capture_output=True, timeout=900
    )
    if proc.returncode != 0:
        log("pip install matplotlib failed: " + proc.stderr.decode("utf-8", "replace").strip()[-400:])
        return False
    importlib.invalidate_caches()
    log("installed: matplotlib")
    return importlib.util.find_spec("matplotlib") is not None


def _requirementsStamp(repoRoot: str) -> str:
    digest = hashlib.sha256()
    for name in ("setup.cfg", "setup.py", "pyproject.toml"):
        path = os.path.join(repoRoot, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                digest.update(name.encode() + b"\0" + f.read())
    return digest.hexdigest()


def ensurePypyVenv(repoRoot: str, log: Log, allowInstall: bool = True) -> Optional[str]:
    """
    Make (or refresh) C{<repo>/.venv-bench-pypy}: a PyPy 3 virtualenv with
    linkerpy installed in editable mode (so it always runs the checkout's
    code).  It is rebuilt when the packaging metadata changes.

    @return: the venv's python, or L{None} if PyPy is unavailable.
    """
    pypy = ensureBinaries(["pypy3"], log, allowInstall)["pypy3"]
    if pypy is None:
        return None
    venv = os.path.join(repoRoot, ".venv-bench-pypy")
    python = os.path.join(venv, "bin", "python")
    stampPath = os.path.join(venv, ".bench-stamp")
    stamp = _requirementsStamp(repoRoot)
    try:
        with open(stampPath) as f:
            current = f.read().strip()
    except OSError:
        current = ""
    if os.path.exists(python) and current == stamp:
        return python
    if not allowInstall:
        log("PyPy virtualenv missing or stale and --no-install given")
        return None
    try:
        if not os.path.exists(python):
            log(f"creating PyPy virtualenv {venv}")
            subprocess.run([pypy, "-m", "venv", venv], check=True, capture_output=True, timeout=600)
        log("installing linkerpy and its dependencies into the PyPy virtualenv (pip)")
        # Debian's PyPy venv ships an old pip; newer pips pick wheels better.
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
                       capture_output=True, timeout=600)
        # Recent cryptography releases have no PyPy 3.9 wheels and need a
        # Rust toolchain to build: insist on a wheel, so pip falls back to
        # the newest release that has one (and a matching pyOpenSSL).
        proc = subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--prefer-binary", "--only-binary", "cryptography",
             "-e", repoRoot],
            capture_output=True, timeout=1800,
        )
    except (OSError, subprocess.SubprocessError) as e:
        log(f"PyPy virtualenv setup failed: {e}")
        return None
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.decode("utf-8", "replace").splitlines()
                  if line.strip() and not line.startswith("WARNING:")]
        log("pip install into the PyPy virtualenv failed: " + "\n".join(errors[-12:]))
        return None
    with open(stampPath, "w") as f:
        f.write(stamp + "\n")
    listing = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], capture_output=True, timeout=120)
    keyPackages = [line for line in listing.stdout.decode("utf-8", "replace").splitlines()
                   if line.split("==")[0].lower() in ("twisted", "cryptography", "pyopenssl")]
    log(f"installed: linkerpy (editable) and dependencies into {venv} ({', '.join(keyPackages)})")
    return python


def toolVersions(paths: Dict[str, Optional[str]]) -> Dict[str, str]:
    """
    One-line version strings of the tools found, for the JSON record.
    """
    flags = {"nginx": ["-v"], "haproxy": ["-v"], "wrk": ["-v"], "iperf3": ["--version"],
             "openssl": ["version"], "pypy3": ["--version"]}
    versions: Dict[str, str] = {}
    for name, path in paths.items():
        if path is None or name not in flags:
            continue
        try:
            proc = subprocess.run([path, *flags[name]], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        text = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
        lines = [line for line in text.splitlines() if line.strip()]
        if lines:
            versions[name] = lines[0].strip()
    return versions
