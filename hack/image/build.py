"""Build the operator's OCI image without a container engine (hack/build-image.sh).

The root filesystem is a minimal Debian 12 with Python 3.11, made from Debian's own
.deb files (`apt-get download`, unpacked here; no shell, apt or dpkg in the image),
plus the operator's wheel and its dependencies pinned by constraints.txt (cp311
manylinux x86_64 wheels from PyPI). It is written as one layer and an OCI image
layout by this script: sorted entries, owner 0:0, every mtime SOURCE_DATE_EPOCH,
gzip without a timestamp, .pyc files in unchecked-hash mode; so the same inputs
give the same digest.

Outputs (under --out, default dist/):
  stemedb-operator-<version>.oci.tar       the image as an oci-archive (an OCI image
                                           layout in a tar), tag <version>
  stemedb-operator-<version>.oci.digest    the manifest digest (sha256:...)
  stemedb-operator-<version>.image.txt     the Debian packages and wheels it holds
Caches (under $STEMEDB_CACHE/image, default ~/.cache/stemedb-operator/image): a
private apt state (no root needed, the machine's apt lists are not touched), the
.deb files and the wheels.
"""

from __future__ import annotations

import argparse
import email.parser
import gzip
import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGE_NAME = "ghcr.io/stemedb/stemedb-operator"
UID = GID = 65532  # the chart's runAsUser/runAsGroup (templates/deployment.yaml)
PYVER = "3.11"
SITE = f"usr/local/lib/python{PYVER}/dist-packages"  # on Debian's python3.11 sys.path
BIN = "usr/local/bin"

# The Debian packages of the root filesystem: the interpreter, the shared
# libraries its standard library's extension modules and the wheels' load, CA
# certificates, and base-files for /etc/os-release only. A chosen subset of
# libpython3.11-stdlib's Depends, as distroless does: no readline/ncurses (no
# terminal), sqlite3, dbm (libdb5.3), NIS (libnsl2/libtirpc3) or crypt; those
# modules are never imported by the operator and fail to import if tried.
DEBS = [
    "base-files",
    "ca-certificates",
    "gcc-12-base",
    "libbz2-1.0",
    "libc6",
    "libexpat1",
    "libffi8",
    "libgcc-s1",
    "liblzma5",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libssl3",
    "libuuid1",
    "python3.11-minimal",
    "zlib1g",
]
# Wheel platforms accepted (the image's glibc is 2.36).
PLATFORMS = ["manylinux_2_36_x86_64", "manylinux_2_34_x86_64", "manylinux_2_28_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_5_x86_64",
             "manylinux1_x86_64"]
# What the Dockerfile's build stage copies (.dockerignore): the same sources.
SOURCES = ["pyproject.toml", "constraints.txt", "README.md", "controller", "stemedb_sim"]

ENV = [
    f"PATH=/{BIN}:/usr/bin",
    "PYTHONDONTWRITEBYTECODE=1",
    "PYTHONUNBUFFERED=1",
    "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
    "LANG=C.UTF-8",
]


def log(msg: str) -> None:
    print(f"[image] {msg}", file=sys.stderr, flush=True)


def run(*cmd: str | os.PathLike[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], check=True, text=True, **kw)  # type: ignore[call-overload]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- the file tree ------------------------------------------------------------

@dataclass
class Entry:
    kind: str  # "file", "dir", "symlink"
    mode: int
    data: bytes = b""
    target: str = ""
    uid: int = 0
    gid: int = 0


class Tree:
    """The image's root filesystem, in memory: path (no leading slash) -> Entry."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in self.entries:
                self.entries[p] = Entry("dir", 0o755)

    def add(self, path: str, entry: Entry) -> None:
        path = path.strip("/")
        self._parents(path)
        old = self.entries.get(path)
        if old is not None and old.kind == "dir" and entry.kind == "dir":
            old.mode = entry.mode
            return
        self.entries[path] = entry

    def file(self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
        self.add(path, Entry("file", mode, data=data, uid=uid, gid=gid))

    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self.add(path, Entry("dir", mode, uid=uid, gid=gid))
        e = self.entries[path.strip("/")]
        e.uid, e.gid = uid, gid

    def symlink(self, path: str, target: str) -> None:
        self.add(path, Entry("symlink", 0o777, target=target))

    def size(self) -> int:
        return sum(len(e.data) for e in self.entries.values())

    def layer(self, mtime: int) -> bytes:
        """A tar of the tree: sorted, fixed owners and mtimes, PAX format."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self.entries):
                e = self.entries[path]
                ti = tarfile.TarInfo(path)
                ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = mtime, e.uid, e.gid, "", ""
                ti.mode = e.mode
                if e.kind == "dir":
                    ti.type = tarfile.DIRTYPE
                    tar.addfile(ti)
                elif e.kind == "symlink":
                    ti.type, ti.linkname = tarfile.SYMTYPE, e.target
                    tar.addfile(ti)
                else:
                    ti.size = len(e.data)
                    tar.addfile(ti, io.BytesIO(e.data))
        return buf.getvalue()


# --- Debian packages ---------------------------------------------------------

class Apt:
    """apt-get with a private state under the cache: no root, the machine's lists
    untouched. Its sources are the machine's (Debian 12 main and security)."""

    def __init__(self, cache: Path, refresh_hours: float) -> None:
        self.root = cache / "apt"
        self.debs = cache / "debs"
        for d in ("lists/partial", "cache/archives/partial", "state"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.debs.mkdir(parents=True, exist_ok=True)
        status = self.root / "state" / "status"
        status.touch()
        user = "root" if os.geteuid() == 0 else os.environ.get("USER", "")
        self.opts = [
            "-o", f"Dir::State={self.root / 'state'}",
            "-o", f"Dir::State::Lists={self.root / 'lists'}",
            "-o", f"Dir::State::status={status}",
            "-o", f"Dir::Cache={self.root / 'cache'}",
            "-o", "Debug::NoLocking=1",
            "-o", "APT::Architecture=amd64",
        ] + (["-o", f"APT::Sandbox::User={user}"] if user else [])
        stamp = self.root / "lists" / ".updated"
        if not stamp.exists() or time.time() - stamp.stat().st_mtime > refresh_hours * 3600:
            log("apt-get update (private state)")
            run("apt-get", *self.opts, "-qq", "update")
            stamp.touch()

    def candidate(self, pkg: str) -> str:
        out = run("apt-cache", *self.opts, "show", "--no-all-versions", pkg,
                  capture_output=True).stdout
        msg = email.parser.Parser().parsestr(out.split("\n\n")[0])
        return str(msg["Version"])

    def download(self, pkgs: list[str]) -> list[Path]:
        files = []
        missing = []
        for pkg in pkgs:
            version = self.candidate(pkg)
            name = f"{pkg}_{version.replace(':', '%3a')}_"
            found = sorted(p for p in self.debs.glob(f"{name}*.deb"))
            if found:
                files.append(found[0])
            else:
                missing.append(f"{pkg}={version}")
        if missing:
            log(f"apt-get download {' '.join(missing)}")
            run("apt-get", *self.opts, "-qq", "download", *missing, cwd=self.debs)
            return self.download(pkgs)
        return files


# Merged /usr (Debian 12): what a package ships under /lib lives in /usr/lib.
USRMERGE = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}


def usrmerge(name: str) -> str:
    path = name.removeprefix("./").strip("/")
    head, _, rest = path.partition("/")
    return USRMERGE[head] + "/" + rest if head in USRMERGE and rest else path


def keep(pkg: str, path: str) -> bool:
    """Files of the packages left out: docs (licences kept), man pages, locales,
    iconv modules (Python has its own codecs), and every executable but python3.11
    (libc6's ldd, iconv, ldconfig..., ca-certificates' update script)."""
    if path.startswith("usr/share/doc/"):
        return path.endswith("/copyright")
    if path.startswith(("usr/share/man", "usr/share/info", "usr/share/lintian",
                        "usr/share/bug", "usr/share/locale", "usr/share/binfmts",
                        "usr/share/pixmaps", "usr/share/applications", "usr/share/debconf",
                        "usr/lib/x86_64-linux-gnu/gconv", "usr/share/common-licenses",
                        "usr/share/base-files", "usr/share/python3", "usr/lib/mime",
                        "usr/share/menu", "etc/")):
        return False
    if path.startswith(("usr/bin/", "usr/sbin/")):
        return path == "usr/bin/python3.11"
    if pkg == "base-files":
        return path == "usr/lib/os-release"
    return True


def unpack_deb(tree: Tree, deb: Path) -> dict[str, str]:
    """The deb's data into the tree (usrmerge applied); returns its control fields."""
    control = run("dpkg-deb", "-f", deb, capture_output=True).stdout
    fields = dict(email.parser.Parser().parsestr(control).items())
    pkg = fields["Package"]
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for m in tar:
            path = usrmerge(m.name)
            # Directories come from the files in them (0755); empty ones are not needed.
            if not path or m.isdir() or not keep(pkg, path):
                continue
            mode = m.mode & 0o7777
            if m.issym():
                tree.symlink(path, m.linkname)
            elif m.islnk():
                tree.file(path, tree.entries[usrmerge(m.linkname)].data, mode)
            elif m.isfile():
                f = tar.extractfile(m)
                assert f is not None
                tree.file(path, f.read(), mode)
    fields["_control"] = control
    return fields


# --- Python -------------------------------------------------------------------

def wheels(cache: Path, src: Path, pip: list[str]) -> list[Path]:
    """The operator's wheel (built from src) and its dependencies' wheels, as pinned
    by constraints.txt, for CPython 3.11 on manylinux x86_64."""
    wheel_dir = cache / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix="wheel-", dir=cache))
    try:
        log("pip wheel --no-deps (the operator)")
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        run(*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", build, src, env=env)
        (op,) = build.glob("stemedb_operator-*.whl")
        platform = [a for p in PLATFORMS for a in ("--platform", p)]
        log("pip download (dependencies, -c constraints.txt)")
        run(*pip, "download", "--quiet", "--only-binary=:all:", "--dest", wheel_dir,
            "--python-version", PYVER, "--implementation", "cp", "--abi", "cp311",
            "--abi", "abi3", "--abi", "none", *platform,
            "-c", src / "constraints.txt", op, env=env)
        target = cache / "wheels-op"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        shutil.copy2(op, target / op.name)
        (op_cached,) = target.glob("*.whl")
        # The set the resolver picked: read back from a dry run with a report.
        report = build / "report.json"
        run(*pip, "install", "--quiet", "--dry-run", "--ignore-installed", "--no-index",
            "--find-links", wheel_dir, "--only-binary=:all:", "--target", build / "t",
            "--python-version", PYVER, "--implementation", "cp", "--abi", "cp311",
            "--abi", "abi3", "--abi", "none", *platform,
            "-c", src / "constraints.txt", "--report", report, op_cached, env=env)
        picked = json.loads(report.read_text())["install"]
        files = []
        for item in picked:
            url = urllib.parse.urlparse(item["download_info"]["url"])
            files.append(Path(urllib.parse.unquote(url.path)))
        return sorted(files, key=lambda p: p.name)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def install_wheels(tree: Tree, files: list[Path]) -> list[tuple[str, str]]:
    """Unpack each wheel into SITE (what an installer does for purelib/platlib, plus
    INSTALLER); console scripts are written by `scripts`. Returns (name, version)."""
    import zipfile

    installed = []
    for whl in files:
        with zipfile.ZipFile(whl) as z:
            names = z.namelist()
            dist_info = next(n.split("/")[0] for n in names
                             if n.split("/")[0].endswith(".dist-info"))
            meta = email.parser.Parser().parsestr(z.read(f"{dist_info}/METADATA").decode())
            installed.append((str(meta["Name"]), str(meta["Version"])))
            for n in names:
                if n.endswith("/"):
                    continue
                first, _, rest = n.partition("/")
                if first.endswith(".data"):
                    kind, _, rest = rest.partition("/")
                    if kind == "scripts":
                        continue  # a tool's script (jsonpointer's CLI): not needed
                    if kind not in ("purelib", "platlib"):
                        raise SystemExit(f"{whl.name}: .data/{kind} is not supported")
                    n = rest
                info = z.getinfo(n if not first.endswith(".data") else f"{first}/{kind}/{n}")
                mode = 0o755 if (info.external_attr >> 16) & 0o111 else 0o644
                tree.file(f"{SITE}/{n}", z.read(info), mode)
            tree.file(f"{SITE}/{dist_info}/INSTALLER", b"hack/build-image.sh\n")
            if f"{dist_info}/entry_points.txt" in names:
                scripts(tree, z.read(f"{dist_info}/entry_points.txt").decode())
    return installed


def scripts(tree: Tree, entry_points: str) -> None:
    import configparser

    cp = configparser.ConfigParser(delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(entry_points)
    if not cp.has_section("console_scripts"):
        return
    for name, ref in cp.items("console_scripts"):
        module, _, attr = ref.strip().partition(":")
        body = (f"#!/usr/bin/python{PYVER}\nimport sys\nfrom {module} import {attr}\n"
                f"if __name__ == '__main__':\n    sys.exit({attr}())\n")
        tree.file(f"{BIN}/{name}", body.encode(), 0o755)


def compile_pyc(tree: Tree) -> int:
    """__pycache__/*.cpython-311.pyc for every .py, unchecked-hash (valid whatever the
    mtimes) and byte-stable: the root filesystem is read-only at run time, so
    nothing could be cached there later."""
    if sys.version_info[:2] != (3, 11):
        raise SystemExit(f"compile .pyc with Python 3.11 (this is {sys.version.split()[0]})")
    import marshal

    n = 0
    sources = [p for p, e in tree.entries.items() if e.kind == "file" and p.endswith(".py")]
    for path in sorted(sources):
        source = tree.entries[path].data
        head, _, name = path.rpartition("/")
        try:
            code = compile(source, "/" + path, "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            continue  # e.g. lib2to3 test data; imported never
        # PEP 552 header: magic, flags 0b01 (hash-based, unchecked), source hash. The
        # code in marshal format 2, which has no back-references: format 3+ marks an
        # object as shared by its reference count at the time, which varies between
        # runs, so the same source gave different bytes in one build and the next.
        pyc = (importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little")
               + importlib.util.source_hash(source) + marshal.dumps(code, 2))
        tree.file(f"{head}/__pycache__/{name[:-3]}.cpython-311.pyc", pyc)
        n += 1
    return n


# --- the image -------------------------------------------------------------

def system_files(tree: Tree, debs: list[dict[str, str]]) -> None:
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"),
                         ("lib64", "usr/lib64")):
        tree.symlink(link, target)
    tree.symlink("usr/bin/python3", f"python{PYVER}")
    tree.file("etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\n"
              b"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
              b"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
    tree.file("etc/group", b"root:x:0:\nnogroup:x:65534:\nnonroot:x:65532:\n")
    tree.file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    tree.symlink("etc/os-release", "../usr/lib/os-release")
    certs = sorted(p for p in tree.entries if p.startswith("usr/share/ca-certificates/")
                   and p.endswith(".crt"))
    bundle = b"".join(tree.entries[p].data.rstrip(b"\n") + b"\n" for p in certs)
    if not certs:
        raise SystemExit("no CA certificates unpacked")
    tree.file("etc/ssl/certs/ca-certificates.crt", bundle)
    # OpenSSL's default paths (OPENSSLDIR /usr/lib/ssl, normally from the openssl package).
    tree.symlink("usr/lib/ssl/certs", "/etc/ssl/certs")
    tree.symlink("usr/lib/ssl/cert.pem", "/etc/ssl/certs/ca-certificates.crt")
    tree.dir("root", 0o700)
    tree.dir("home/nonroot", 0o700, UID, GID)
    tree.dir("tmp", 0o1777)
    tree.dir("run", 0o755)
    tree.symlink("var/run", "/run")
    for d in ("proc", "sys", "dev", "etc/ssl/private"):
        tree.dir(d, 0o755 if d != "etc/ssl/private" else 0o700)
    # What the scanners read (syft, trivy, grype): one dpkg status stanza per
    # package, as distroless writes them; there is no dpkg to use them.
    for f in debs:
        stanza = f["_control"].rstrip("\n").split("\n")
        stanza.insert(1, "Status: install ok installed")
        tree.file(f"var/lib/dpkg/status.d/{f['Package']}", ("\n".join(stanza) + "\n").encode())


def oci(layer_tar: bytes, version: str, epoch: int, revision: str) -> tuple[dict[str, bytes], str]:
    """Blobs and the layout's files: {path in layout: bytes}, and the manifest digest."""
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, compresslevel=9, mtime=0) as g:
        g.write(layer_tar)
    layer_gz = gz.getvalue()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    labels = {
        "org.opencontainers.image.title": "stemedb-operator",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.source": "https://github.com/stemedb/stemedb-operator",
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.base.name": "debian:12 packages (hack/image/build.py)",
    }
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": f"{UID}:{GID}",
            "Env": ENV,
            "Entrypoint": [f"/{BIN}/stemedb-operator"],
            "Cmd": ["run", "--all-namespaces"],
            "WorkingDir": "/",
            "ExposedPorts": {"9090/tcp": {}, "8080/tcp": {}},
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer_tar)]},
        "history": [{"created": created, "created_by": "hack/build-image.sh"}],
    }
    config_b = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(config_b), "size": len(config_b)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(layer_gz), "size": len(layer_gz)}],
        "annotations": {"org.opencontainers.image.created": created, **labels},
    }
    manifest_b = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    digest = sha256(manifest_b)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest, "size": len(manifest_b),
                       "platform": {"architecture": "amd64", "os": "linux"},
                       "annotations": {"org.opencontainers.image.ref.name": version}}],
    }
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
             "index.json": json.dumps(index, sort_keys=True, separators=(",", ":")).encode()}
    for blob in (layer_gz, config_b, manifest_b):
        files["blobs/sha256/" + sha256(blob).removeprefix("sha256:")] = blob
    return files, digest


def archive(files: dict[str, bytes], epoch: int) -> bytes:
    tree = Tree()
    for path, data in files.items():
        tree.file(path, data)
    return tree.layer(epoch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "dist")
    ap.add_argument("--refresh-hours", type=float, default=24.0,
                    help="refresh the private apt lists when older (default 24)")
    args = ap.parse_args()
    started = time.monotonic()

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    # hack/release.sh builds from an export of HEAD (no .git) and passes both.
    revision = os.environ.get("STEMEDB_REVISION", "")
    if not revision:
        revision = run("git", "-C", REPO, "rev-parse", "HEAD", capture_output=True).stdout.strip()
        if run("git", "-C", REPO, "status", "--porcelain", "--", *SOURCES,
               capture_output=True).stdout.strip():
            revision += "-dirty"
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or run(
        "git", "-C", REPO, "log", "-1", "--format=%ct", capture_output=True).stdout.strip())
    cache = Path(os.environ.get("STEMEDB_CACHE") or
                 Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                 / "stemedb-operator") / "image"
    cache.mkdir(parents=True, exist_ok=True)

    tree = Tree()
    apt = Apt(cache, args.refresh_hours)
    debs = [unpack_deb(tree, deb) for deb in apt.download(DEBS)]
    log(f"{len(debs)} Debian packages unpacked")

    with tempfile.TemporaryDirectory(prefix="src-", dir=cache) as tmp:
        src = Path(tmp)
        for name in SOURCES:
            s = REPO / name
            if s.is_dir():
                shutil.copytree(s, src / name, ignore=shutil.ignore_patterns(
                    "__pycache__", "*.pyc"))
            else:
                shutil.copy2(s, src / name)
        pip = [sys.executable, "-m", "pip"]
        wheel_files = wheels(cache, src, pip)
    installed = install_wheels(tree, wheel_files)
    log(f"{len(installed)} wheels installed")
    system_files(tree, debs)
    n = compile_pyc(tree)
    log(f"{n} modules compiled")

    layer_tar = tree.layer(epoch)
    files, digest = oci(layer_tar, version, epoch, revision)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"stemedb-operator-{version}"
    tar = archive(files, epoch)
    Path(f"{base}.oci.tar").write_bytes(tar)
    Path(f"{base}.oci.digest").write_text(digest + "\n")
    layer_gz = max(files.values(), key=len)
    lines = [f"image {IMAGE_NAME}:{version}", f"digest {digest}",
             f"revision {revision}", f"source_date_epoch {epoch}",
             f"size_uncompressed {len(layer_tar)}", f"size_compressed {len(layer_gz)}"]
    lines += [f"deb {f['Package']} {f['Version']}"
              for f in sorted(debs, key=lambda f: f["Package"])]
    lines += [f"wheel {n} {v}" for n, v in sorted(installed, key=lambda t: t[0].lower())]
    Path(f"{base}.image.txt").write_text("\n".join(lines) + "\n")
    log(f"{len(tree.entries)} entries, {tree.size() / 2**20:.1f} MiB of files; layer "
        f"{len(layer_tar) / 2**20:.1f} MiB, {len(layer_gz) / 2**20:.1f} MiB gzipped; "
        f"{time.monotonic() - started:.0f}s")
    log(f"wrote {base}.oci.tar ({IMAGE_NAME}:{version})")
    print(digest)


if __name__ == "__main__":
    main()
