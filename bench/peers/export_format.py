"""Reader for the directories bench/export.hpp writes: manifest.json plus raw little-endian arrays.

manifest.json = {"format": "fisher_unlearn-bench-export", "version": 1,
                 "arrays": {name: {"file", "dtype", "shape"}}, "values": {name: number or string}}
"""
import json
import os
import struct

FORMAT = "fisher_unlearn-bench-export"
VERSION = 1
_ITEM = {"float32": ("f", 4), "float64": ("d", 8), "int32": ("i", 4)}


class ExportError(RuntimeError):
    pass


class Export:
    def __init__(self, directory):
        self.directory = directory
        path = os.path.join(directory, "manifest.json")
        try:
            with open(path) as f:
                manifest = json.load(f)
        except (OSError, ValueError) as e:
            raise ExportError(f"{path}: cannot read the manifest ({e}); run the C++ benchmark with "
                              f"--export_dir first") from e
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise ExportError(f"{path}: not a {FORMAT} version {VERSION} manifest")
        self.arrays = manifest["arrays"]
        self.values = manifest["values"]

    def array(self, name, torch=None):
        """The array as a torch tensor (when torch is given) or a flat list, shaped as the manifest says."""
        entry = self.arrays[name]
        code, size = _ITEM[entry["dtype"]]
        count = 1
        for n in entry["shape"]:
            count *= n
        path = os.path.join(self.directory, entry["file"])
        with open(path, "rb") as f:
            raw = f.read()
        if len(raw) != count * size:
            raise ExportError(f"{path}: {len(raw)} bytes where shape {entry['shape']} of {entry['dtype']} "
                              f"needs {count * size}; the export is truncated or stale")
        if torch is None:
            return list(struct.unpack(f"<{count}{code}", raw))
        dtype = {"float32": torch.float32, "float64": torch.float64, "int32": torch.int32}[entry["dtype"]]
        return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(entry["shape"])
