"""Hand this machine's pip settings to a `docker build` that runs on the host network (used by docker-smoke.sh).

Reads what `pip install` here would use (index, extra indexes, find-links, trusted hosts, CA bundle, no-index),
serves the local folders among them and the CA bundle read-only over HTTP on 127.0.0.1, and writes the matching
build arguments of docker/Dockerfile.cpu to --args-file, one NAME=value per line (values never hold a newline).
With --torch SPEC it also asks this pip whether it finds SPEC (the CPU torch wheel): if so TORCH_INDEX_URL= (empty)
is written, so the build takes the wheel from the same sources as here and does not try the public torch index.
It then serves until SIGTERM or SIGINT. Standard library plus the pip that runs it.

    python scripts/docker_pip_sources.py --args-file FILE [--port 0] [--torch 'torch==2.13.0+cpu']
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import posixpath
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
from pathlib import Path

DEFAULT_INDEX = "https://pypi.org/simple"
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")


def pip_options():
    """The options `pip install` takes here from pip.conf files and PIP_* variables (pip's own parser)."""
    try:
        from pip._internal.commands import create_command

        options, _ = create_command("install").parse_args([])
    except Exception as err:  # pip's internals moved: say so instead of building with the wrong sources
        sys.exit(f"docker_pip_sources: cannot read pip's settings with this pip ({err!r})")
    return options


def local_path(location: str) -> Path | None:
    """The file or folder a pip location names when it is local (a path or a file:// URL), else None."""
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme == "":
        return Path(location).expanduser().resolve()
    return None


class Routes:
    """URL prefix -> local folder, plus single files; everything else is 404."""

    def __init__(self):
        self.folders: dict[str, Path] = {}
        self.files: dict[str, Path] = {}

    def folder(self, kind: str, path: Path) -> str:
        prefix = f"{kind}{len(self.folders)}"
        self.folders[prefix] = path
        return prefix

    def resolve(self, url_path: str) -> Path | None:
        path = posixpath.normpath(urllib.parse.unquote(url_path.split("?", 1)[0].split("#", 1)[0]))
        parts = [p for p in path.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            return None
        if len(parts) == 1 and parts[0] in self.files:
            return self.files[parts[0]]
        root = self.folders.get(parts[0])
        if root is None:
            return None
        target = root.joinpath(*parts[1:])
        try:
            target.resolve().relative_to(root.resolve())
        except ValueError:  # a symlink out of the served folder
            return None
        return target


def make_handler(routes: Routes):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def translate_path(self, path: str) -> str:
            target = routes.resolve(path)
            return str(target) if target is not None else "/nonexistent/docker-pip-sources"

        def do_PUT(self):  # read-only
            self.send_error(405)

        do_POST = do_DELETE = do_PUT

        def log_message(self, format, *args):  # quiet: pip asks for hundreds of pages
            pass

    return Handler


def translate(options, routes: Routes, base: str) -> dict[str, str]:
    """Build arguments for docker/Dockerfile.cpu that reproduce `options`, local places served under `base`."""
    def served(location: str, kind: str) -> str:
        path = local_path(location)
        if path is None:
            return location
        if not path.exists():
            print(f"docker_pip_sources: skipping {location} (not found)", file=sys.stderr)
            return ""
        if path.is_dir() and kind == "find-links":
            return f"{base}/{routes.folder('f', path)}/"
        # an index folder (its pages link to ../../files/...) or one HTML file: serve the parent folder
        return f"{base}/{routes.folder('i' if kind == 'index' else 'f', path.parent)}/{path.name}" + (
            "/" if path.is_dir() else "")

    args = {}
    if options.no_index:
        args["PIP_NO_INDEX"] = "1"
    if options.index_url and options.index_url.rstrip("/") != DEFAULT_INDEX:
        args["PIP_INDEX_URL"] = served(options.index_url, "index")
    extra = [u for u in (served(u, "index") for u in options.extra_index_urls or []) if u]
    links = [u for u in (served(u, "find-links") for u in options.find_links or []) if u]
    if extra:
        args["PIP_EXTRA_INDEX_URL"] = " ".join(extra)
    if links:
        args["PIP_FIND_LINKS"] = " ".join(links)
    if options.trusted_hosts:
        args["PIP_TRUSTED_HOST"] = " ".join(options.trusted_hosts)
    cert = options.cert or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    cert = Path(cert) if cert else (SYSTEM_CA_BUNDLE if SYSTEM_CA_BUNDLE.is_file() else None)
    if cert is not None and cert.is_file():
        routes.files["ca.pem"] = cert
        args["PIP_CERT_URL"] = f"{base}/ca.pem"
    for name in PROXY_VARS:
        if os.environ.get(name):
            args[name] = os.environ[name]
    if any(name in args for name in PROXY_VARS):
        no_proxy = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
        args["no_proxy"] = args["NO_PROXY"] = ",".join(filter(None, [no_proxy, "127.0.0.1", "localhost"]))
    return args


def finds_locally(spec: str) -> str | None:
    """Where this machine's pip would take `spec` from (no download, no install), or None if it finds none."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed",
                                 "--quiet", "--report", str(report), spec], capture_output=True, text=True,
                                timeout=600)
        if result.returncode != 0 or not report.exists():
            return None
        installs = json.loads(report.read_text()).get("install", [])
        return installs[0]["download_info"]["url"] if installs else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--args-file", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0, help="loopback port to serve on (0: any free one)")
    parser.add_argument("--torch", default=None, help="a torch requirement to look for in this pip's sources")
    args = parser.parse_args(argv)

    routes = Routes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(routes))
    server.daemon_threads = True
    base = f"http://127.0.0.1:{server.server_address[1]}"
    build_args = translate(pip_options(), routes, base)
    if args.torch:
        where = finds_locally(args.torch)
        if where:
            build_args["TORCH_INDEX_URL"] = ""
            print(f"docker_pip_sources: {args.torch} found by this machine's pip ({where})", file=sys.stderr)
        else:
            print(f"docker_pip_sources: {args.torch} not found by this machine's pip; the build will try the "
                  "Dockerfile's TORCH_INDEX_URL", file=sys.stderr)
    for folder_prefix, folder in routes.folders.items():
        print(f"docker_pip_sources: serving {folder} as {base}/{folder_prefix}/", file=sys.stderr)

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    tmp = args.args_file.with_suffix(".tmp")
    tmp.write_text("".join(f"{k}={v}\n" for k, v in build_args.items()))
    tmp.replace(args.args_file)  # appears complete: the caller waits for it
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
