"""The benchmark web server: nginx as a non-daemon child, one server per host port on 127.0.0.1.

    python benchmarks/nginx.py SITE_DIR --hosts 4      # serve until Ctrl-C

Everything nginx writes (config, pid, error log, temp dirs) lives under ``benchmarks/.work/nginx``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

WORK_DIR = Path(__file__).resolve().parent / ".work"
DEFAULT_BASE_PORT = 18080
_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

_CONFIG = """\
daemon off;
master_process on;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    types {{
        text/html html;
        text/css css;
        image/jpeg jpg;
    }}
    default_type application/octet-stream;
    {access_log}
    log_not_found off;
    server_tokens off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 100000;
    open_file_cache max=100000 inactive=120s;
    open_file_cache_valid 600s;
{temp_paths}
{servers}
}}
"""

_SERVER = """\
    server {{
        listen 127.0.0.1:{port};
        root {root};
        # The scale site: every /e/ URL is the one template, its links made unique by SSI.
        location /e/ {{
            ssi on;
            try_files /e.html =404;
        }}
    }}
"""


class NginxError(RuntimeError):
    """nginx is missing, cannot start, or a port it needs is taken."""


def find_nginx(install: bool = True) -> str:
    """The nginx binary; installs Debian's ``nginx`` package with apt-get if missing and root."""
    for candidate in ("nginx", "/usr/sbin/nginx"):
        found = shutil.which(candidate)
        if found:
            return found
    if not install or os.geteuid() != 0:
        raise NginxError("nginx is not installed: run `sudo apt-get install nginx`")
    print("nginx not found: installing Debian's nginx package", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "nginx"]):
        result = subprocess.run(
            command, check=False, env=env, capture_output=True, text=True, timeout=900
        )
        if result.returncode != 0:
            raise NginxError(f"`{' '.join(command)}` failed: {result.stderr.strip()[-2000:]}")
    return find_nginx(install=False)


def render_config(
    site_dir: Path, work_dir: Path, hosts: int, base_port: int, access_log: Path | None = None
) -> str:
    """nginx.conf serving ``site_dir/host{h}`` on ``127.0.0.1:(base_port + h)``; with
    ``access_log``, one line per request there: its end time (unix seconds) and status."""
    temp_paths = "".join(f"    {name}_temp_path {work_dir}/{name};\n" for name in _TEMP_DIRS)
    servers = "".join(
        _SERVER.format(port=base_port + h, root=(site_dir / f"host{h}").resolve())
        for h in range(hosts)
    )
    log = "access_log off;"
    if access_log is not None:
        log = f"log_format timed '$msec $status';\n    access_log {access_log} timed;"
    return _CONFIG.format(work=work_dir, temp_paths=temp_paths, servers=servers, access_log=log)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Nginx:
    """nginx serving a generated site, as a context manager that always stops it.

    >>> with Nginx(Path("benchmarks/.work/site"), hosts=4) as server:  # doctest: +SKIP
    ...     ...  # http://127.0.0.1:18080/p/0.html is up
    """

    def __init__(
        self,
        site_dir: Path,
        hosts: int,
        base_port: int = DEFAULT_BASE_PORT,
        work_dir: Path = WORK_DIR / "nginx",
        access_log: Path | None = None,
    ) -> None:
        self.site_dir = site_dir.resolve()
        self.hosts = hosts
        self.base_port = base_port
        self.work_dir = work_dir.resolve()
        self.access_log = access_log.resolve() if access_log is not None else None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ports(self) -> list[int]:
        return [self.base_port + h for h in range(self.hosts)]

    @property
    def error_log(self) -> Path:
        return self.work_dir / "error.log"

    def start(self, timeout_s: float = 10.0) -> None:
        """Write the config, start nginx and wait until every port accepts connections."""
        binary = find_nginx()
        taken = [port for port in self.ports if not _port_free(port)]
        if taken:
            raise NginxError(
                f"ports {taken} are in use: stop whatever listens there or pick --base-port"
            )
        for name in _TEMP_DIRS:
            (self.work_dir / name).mkdir(parents=True, exist_ok=True)
        config = self.work_dir / "nginx.conf"
        config.write_text(
            render_config(self.site_dir, self.work_dir, self.hosts, self.base_port, self.access_log)
        )
        self.error_log.write_text("")
        command = [binary, "-p", str(self.work_dir), "-e", str(self.error_log), "-c", str(config)]
        # Its own session, so a last-resort kill reaches the worker too, and Ctrl-C reaches us only.
        self.process = subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)
        try:
            self._wait_ready(timeout_s)
        except BaseException:  # a failed or interrupted start must not leave nginx behind
            self.stop()
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while not all(_port_open(port) for port in self.ports):
            if self.process.poll() is not None:
                raise NginxError(f"nginx exited at start-up: {self._log_tail()}")
            if time.monotonic() > deadline:
                raise NginxError(
                    f"nginx did not listen within {timeout_s:.0f} s: {self._log_tail()}"
                )
            time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            return self.error_log.read_text()[-2000:].strip() or "(error log empty)"
        except OSError as exc:
            return f"(no error log: {exc})"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Fast shutdown (SIGTERM), then SIGKILL to nginx's process group if it lingers."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout_s)

    def __enter__(self) -> Nginx:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.process.pid}" if self.process else "stopped"
        return f"<Nginx {state} ports={self.base_port}..{self.base_port + self.hosts - 1}>"


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so ``finally`` blocks stop nginx on `kill` too."""

    def _interrupt(signum: int, frame: object) -> None:
        # Once: a second SIGTERM must not cut short the clean-up the first one started.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("site_dir", type=Path)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT)
    args = parser.parse_args(argv)
    interrupt_on_sigterm()
    server = Nginx(args.site_dir, args.hosts, args.base_port)
    try:
        server.start()
        print(f"{server!r}: serving {args.site_dir}; Ctrl-C stops it", file=sys.stderr)
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except NginxError as exc:
        sys.exit(f"error: {exc}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
