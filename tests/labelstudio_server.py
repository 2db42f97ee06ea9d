"""A real Label Studio for the tests (standard library only): started from its own virtual environment
(``.venv-ls`` at the repository's root, made by ``.ci/label-studio-venv``, or the ``label-studio``
script that ``SEMCORR_LABEL_STUDIO`` names), on a free port of 127.0.0.1, with SQLite in a
temporary data folder and a user whose API key is :data:`TOKEN`.

Label Studio cannot share the tests' environment (it pins older numpy and pyarrow), so it runs as
a subprocess and is driven over HTTP. Its first start migrates a database (30-45 s on a 2-core
machine): the migrated data folder is kept as a template beside the executable's environment, one
per Label Studio version, and copied for every later start (a start then takes seconds).

    python tests/labelstudio_server.py --make-template     # what .ci/label-studio-venv runs once
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ENV_VAR = "SEMCORR_LABEL_STUDIO"
USERNAME = "semcorr-test@localhost"
PASSWORD = "semcorr-test-password"
TOKEN = "semcorr0test0token0000000000000000000000"  # a legacy API key, 40 characters like Django's own
# What Label Studio's process sees: an allow-list, never the tests' environment (Label Studio reads
# unprefixed HOST, PORT, DEBUG, CI, USERNAME, LOG_LEVEL, ... and every fflag_* name; CI sets CI=true).
PASSED_ON = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


def find_label_studio() -> tuple[Path | None, str]:
    """The ``label-studio`` script to run, or ``None`` and why there is none."""
    given = os.environ.get(ENV_VAR)
    path = Path(given) if given else REPO / ".venv-ls" / "bin" / "label-studio"
    if path.is_file() and os.access(path, os.X_OK):
        return path, ""
    where = f"{ENV_VAR}={given}" if given else f"{path} (or set {ENV_VAR} to a label-studio script)"
    return None, f"no Label Studio at {where}: run .ci/label-studio-venv to install it"


def installed_version(executable: Path) -> str:
    """The version of the ``label-studio`` package beside ``executable`` (its dist-info's name)."""
    found = sorted(executable.resolve().parent.parent.glob("lib/python*/site-packages/label_studio-*.dist-info"))
    return found[-1].name[len("label_studio-") : -len(".dist-info")] if found else "unknown"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def label_studio_env(data: Path, port: int) -> dict[str, str]:
    """Label Studio's environment: the allow-list above, then its settings for a test server."""
    env = {name: os.environ[name] for name in PASSED_ON if name in os.environ}
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data),
            "DJANGO_DB": "sqlite",
            "LABEL_STUDIO_HOST": f"http://127.0.0.1:{port}",  # the hostname it gives the backend in /setup
            "LABEL_STUDIO_USERNAME": USERNAME,
            "LABEL_STUDIO_PASSWORD": PASSWORD,
            "LABEL_STUDIO_USER_TOKEN": TOKEN,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",  # `Authorization: Token KEY` (read when the org is made)
            "ML_BLOCK_LOCAL_IP": "false",
            "SSRF_PROTECTION_ENABLED": "false",  # the backend is on 127.0.0.1
            "LOCAL_FILES_SERVING_ENABLED": "true",
            "LOCAL_FILES_DOCUMENT_ROOT": str(data),
            "fflag_feat_utc_210_prediction_validation_15082025": "true",  # refuse predictions the config does not fit
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "LOG_LEVEL": "WARNING",
            "DEBUG": "false",
            "CI": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


class LabelStudioServer:
    """One Label Studio process on 127.0.0.1: ``url``, ``token``, ``log_path``; :meth:`api` calls it."""

    def __init__(self, executable: Path, data: Path, *, timeout: float = 240.0) -> None:
        self.executable = executable
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = TOKEN
        self.timeout = timeout
        self.log_path = data.with_name(data.name + ".log")
        self.process: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0

    def start(self, template: Path | None = None) -> LabelStudioServer:
        started = time.monotonic()
        if template is not None and template.is_dir():
            shutil.copytree(template, self.data, dirs_exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(self.executable),
                    "start",
                    "--no-browser",
                    "--internal-host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data),
                ],
                env=label_studio_env(self.data, self.port),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = started + self.timeout
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Label Studio did not start on port {self.port}; its log: {self.log_path}")
            time.sleep(0.2)
        self.api("GET", "/api/current-user/whoami")  # the user and its key exist
        self.start_seconds = time.monotonic() - started
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health/", timeout=2) as response:
                return json.loads(response.read()).get("status") == "UP"
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        """SIGTERM to the process group started here, SIGKILL after 15 s."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        except ProcessLookupError:
            pass

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        files: dict[str, tuple[str, bytes]] | None = None,
        token: str | None = None,
        expect: tuple[int, ...] = (200, 201, 204),
    ) -> Any:
        """Call Label Studio's API with the key: ``body`` as JSON, or ``files`` ({field: (name, bytes)})
        as a multipart form. Returns the JSON answer (``None`` when empty); another status raises."""
        headers = {"Authorization": f"Token {token or self.token}"}
        data = None
        if files is not None:
            boundary = uuid.uuid4().hex
            parts = [
                f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n".encode()
                + content
                + b"\r\n"
                for field, (name, content) in files.items()
            ]
            data = b"".join(parts) + f"--{boundary}--\r\n".encode()
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        if status not in expect:
            raise AssertionError(
                f"Label Studio answered {method} {path} with {status}: {raw[:500]!r} (its log: {self.log_path})"
            )
        return json.loads(raw) if raw else None


def template_folder(executable: Path) -> Path:
    """Where the migrated data folder of this Label Studio version is kept (beside its environment)."""
    return executable.resolve().parent.parent / f"semcorr-template-{installed_version(executable)}"


def make_template(executable: Path) -> Path:
    """The migrated data folder for ``executable``'s version: made once (a first start), then reused."""
    template = template_folder(executable)
    if template.is_dir():
        return template
    work = Path(tempfile.mkdtemp(prefix="semcorr-ls-template-"))
    server = LabelStudioServer(executable, work / "data")
    try:
        server.start()
    finally:
        server.stop()
    staged = template.with_name(template.name + f".{os.getpid()}.part")
    shutil.copytree(work / "data", staged)
    try:
        staged.rename(template)  # another process may have made it meanwhile: theirs stays
    except OSError:
        shutil.rmtree(staged, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return template


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--make-template", action="store_true", help="make the migrated data folder (once)")
    args = parser.parse_args()
    executable, why = find_label_studio()
    if executable is None:
        print(why, file=sys.stderr)
        return 1
    if args.make_template:
        started = time.monotonic()
        print(
            f"Label Studio {installed_version(executable)} template: {make_template(executable)} "
            f"({time.monotonic() - started:.1f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
