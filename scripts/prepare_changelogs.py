#!/usr/bin/env python3
"""Extracts Debian changelog entries with their real maintainer trailers for case A of
examples/case_studies (docs/case_studies.md) into data/changelogs/entries.jsonl.

Every entry of every installed /usr/share/doc/*/changelog.Debian.gz (one file per source package; the
same file installed by several binary packages is read once) becomes one JSON line:
  {"package", "version", "name", "email", "date", "text"}
where text is the entry in its real layout, shortened to its header line, its first change item (at
most two lines of 100 characters) and its trailer " -- Name <email>  date". Entries whose trailer
does not parse, or whose text is not valid UTF-8, are skipped. The order is the sorted file order,
then the order in the file; which people the experiment uses is chosen by the C++ driver (seeded).

Usage: scripts/prepare_changelogs.py [OUT] (default data/changelogs/entries.jsonl); prints the count.
"""

import glob
import gzip
import hashlib
import json
import os
import re
import sys

HEADER = re.compile(r"^(\S+) \(([^)\s]+)\) ([^;]+); (.*)$")
TRAILER = re.compile(r"^ -- (\S.*?) <([^<>@\s]+@[^<>\s]+)>  (\S.*)$")
ITEM_WIDTH = 100


def entries_of(path):
    try:
        lines = gzip.open(path).read().decode("utf-8").split("\n")
    except (OSError, UnicodeDecodeError, EOFError):
        return
    package = os.path.basename(os.path.dirname(path))
    head, body = None, []
    for line in lines:
        m = HEADER.match(line)
        if m:
            head, body = m, []
            continue
        if head is None:
            continue
        t = TRAILER.match(line)
        if not t:
            body.append(line)
            continue
        item = []
        for b in body:
            s = b.rstrip()
            if not item:
                if s.lstrip().startswith(("*", "-", "+")):
                    item.append(s[:ITEM_WIDTH])
            elif s.strip() and not s.lstrip().startswith(("*", "[")) and len(item) < 2:
                item.append(s[:ITEM_WIDTH])
            else:
                break
        if item:
            text = head.group(0) + "\n\n" + "\n".join(item) + "\n\n" + line + "\n"
            yield {"package": head.group(1), "version": head.group(2), "name": t.group(1).strip(),
                   "email": t.group(2), "date": t.group(3).strip(), "text": text}
        head, body = None, []


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "data/changelogs/entries.jsonl"
    seen = set()
    rows = []
    for path in sorted(glob.glob("/usr/share/doc/*/changelog.Debian.gz")):
        real = os.path.realpath(path)
        try:
            digest = hashlib.sha256(open(real, "rb").read()).hexdigest()
        except OSError:
            continue
        if digest in seen:
            continue
        seen.add(digest)
        rows.extend(entries_of(real))
    if not rows:
        sys.exit("no Debian changelog entry found under /usr/share/doc/*/changelog.Debian.gz; "
                 "this case study needs a Debian-based system with documentation installed")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    print(f"{len(rows)} changelog entries -> {out}")


if __name__ == "__main__":
    main()
