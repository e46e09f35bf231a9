"""Local-folder storage: the embedded default. Engines read its files in place."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs

from beaconlake.backends.storage.base import Capabilities, ObjectInfo, Storage
from beaconlake.backends.storage.settings import LocalStorageSettings
from beaconlake.errors import StorageError
from beaconlake.files import replace_file


class LocalStorage(Storage):
    capabilities = Capabilities(local_paths=True)

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def from_settings(cls, settings: LocalStorageSettings) -> LocalStorage:
        return cls(settings.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StorageError(f"key {key!r} points outside the lake root {self.root}")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # the object is whole and durable, or absent; a temporary name of this process's own
        replace_file(path, data, path.with_name(f".{path.name}.{os.getpid()}.tmp"))

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StorageError(f"no object {key!r} under {self.root}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_info(self, prefix: str = "") -> list[ObjectInfo]:
        # walk only the deepest folder the prefix names, not the whole lake
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._path(folder) if folder else self.root
        out = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            rel = "" if rel == "." else rel + "/"
            dirnames[:] = [d for d in dirnames if (rel + d + "/").startswith(prefix) or prefix.startswith(rel + d + "/")]
            for name in filenames:
                key = rel + name
                if name.startswith(".") or not key.startswith(prefix):
                    continue  # a put's temporary file, or outside the prefix
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:  # deleted meanwhile
                    continue
                out.append(ObjectInfo(key, st.st_size, st.st_mtime_ns // 1_000_000))
        return sorted(out, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def arrow_filesystem(self) -> tuple[pafs.FileSystem, str]:
        return pafs.LocalFileSystem(), str(self.root.resolve())

    def scan_paths(self, keys: list[str], cache_dir: Path) -> list[str]:
        root = self.root.resolve()
        for key in keys:  # a lexical check: keys come from listings, a resolve() each would cost
            if key.startswith("/") or ".." in key.split("/"):
                raise StorageError(f"key {key!r} points outside the lake root {self.root}")
        return [str(root / key) for key in keys]
