#!/usr/bin/env python3
"""Extracts one corpus from its installed Debian package into data/<corpus>/{train,valid}.txt.

Called by scripts/prepare_data.sh (which installs the package first); documented in docs/data.md.
Every corpus is cut into *records* (a verse, a fortune, a paragraph, a gloss), each normalised to one
line of printable ASCII. A record goes to the validation split when the first 8 hex digits of the MD5
of its text, as an integer, are below 5 % of 2^32: deterministic, independent of record order, and
duplicated records always land on the same side (no train/valid leakage through repeats).
"""

import glob
import gzip
import hashlib
import os
import re
import subprocess
import sys
import unicodedata

VALID_FRACTION = 0.05

# Typographic characters worth keeping as their ASCII look-alikes; anything else that does not
# decompose to ASCII is dropped (the byte tokenizer would see it as 2-4 rare bytes otherwise).
_ASCII_MAP = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2013": "-", "\u2014": "--", "\u2015": "--", "\u2212": "-", "\u2010": "-", "\u2011": "-",
    "\u2026": "...", "\u00a0": " ", "\u00b7": "-", "\u2022": "*", "\u00d7": "x",
    "\u00df": "ss", "\u00e6": "ae", "\u00c6": "AE", "\u0153": "oe", "\u0152": "OE", "\u00f8": "o",
    "\u00d8": "O", "\u0142": "l", "\u0141": "L", "\u00b0": " degrees",
}


def to_ascii(text: str) -> str:
    # Overstrike sequences (c BACKSPACE c, _ BACKSPACE c) come from old fortune files: keep the last char.
    text = re.sub(r".\x08", "", text)
    out = []
    for ch in unicodedata.normalize("NFKD", text):
        if ch in _ASCII_MAP:
            out.append(_ASCII_MAP[ch])
        elif unicodedata.combining(ch):
            continue
        elif ch in "\t\n\r\f\v":
            out.append(" ")
        elif " " <= ch <= "~":
            out.append(ch)
        # every other character (control, box drawing, non-Latin) is dropped
    return re.sub(r"\s+", " ", "".join(out)).strip()


def records_kjv():
    # `bible` prints each chapter as: blank line, heading ("1 Samuel 3"), blank line, then verses
    # "  N text" wrapped at 80 columns. A verse is its first line plus the continuation lines.
    dump = subprocess.run(["bible", "-p", "/usr/lib", "Gen1:1-Rev22:21"], check=True,
                          capture_output=True, text=True).stdout
    verse, after_blank = None, False
    for line in dump.splitlines():
        m = re.match(r"^\s+\d+ (.*)$", line)
        if line.strip() == "":
            after_blank = True
            continue
        if m or after_blank:
            if verse:
                yield verse
            verse = m.group(1) if m else None  # a non-verse line after a blank line is a heading
        elif verse is not None:
            verse += " " + line
        after_blank = False
    if verse:
        yield verse


def records_fortunes():
    # The .u8 files are the UTF-8 versions of the fortune files; records are separated by "%" lines.
    # ascii-art is left out: its records are pictures, not text.
    files = sorted(glob.glob("/usr/share/games/fortunes/*.u8"))
    files = [f for f in files if os.path.basename(f) != "ascii-art.u8"]
    if not files:
        raise SystemExit("no fortune files under /usr/share/games/fortunes (is the 'fortunes' package installed?)")
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        for rec in re.split(r"(?m)^%\s*$", text):
            yield rec


def records_jargon():
    # Paragraphs of the Jargon File's text version; tables drawn with box characters are skipped.
    with gzip.open("/usr/share/doc/jargon-text/jargon.txt.gz", "rt", encoding="utf-8", errors="replace") as f:
        text = f.read()
    for para in re.split(r"\n\s*\n", text):
        if re.search("[\u2500-\u257f]", para):
            continue
        yield para


def records_wordnet():
    # data.<pos> lines: "offset lexfile pos count word lexid ... | gloss"; the licence header lines
    # start with two spaces. A record is "word, word: gloss" with underscores turned into spaces.
    for pos in ("noun", "verb", "adj", "adv"):
        with open(f"/usr/share/wordnet/data.{pos}", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue
                head, gloss = line.split("|", 1)
                fields = head.split()
                count = int(fields[3], 16)
                words = [fields[4 + 2 * i].replace("_", " ") for i in range(count)]
                words = [re.sub(r"\([a-z]+\)$", "", w) for w in words]  # adjective markers like "(a)"
                yield ", ".join(words) + ": " + gloss.strip()


CORPORA = {
    "kjv": records_kjv,
    "fortunes": records_fortunes,
    "jargon": records_jargon,
    "wordnet": records_wordnet,
}


def in_valid(record: str) -> bool:
    h = int(hashlib.md5(record.encode("ascii")).hexdigest()[:8], 16)
    return h < VALID_FRACTION * 2**32


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in CORPORA:
        print(f"usage: prepare_data.py {{{'|'.join(CORPORA)}}} OUTPUT_DIR", file=sys.stderr)
        return 2
    name, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    train, valid = [], []
    for rec in CORPORA[name]():
        rec = to_ascii(rec)
        if len(rec) < 2:
            continue
        (valid if in_valid(rec) else train).append(rec)
    if not train or not valid:
        raise SystemExit(f"{name}: extraction produced {len(train)} train and {len(valid)} valid records")
    # Written to temporary names and renamed, so an interrupted run never leaves a half corpus behind.
    for split, recs in (("train", train), ("valid", valid)):
        tmp = os.path.join(out_dir, f".{split}.txt.tmp")
        with open(tmp, "w", encoding="ascii", newline="\n") as f:
            f.write("\n".join(recs) + "\n")
        os.replace(tmp, os.path.join(out_dir, f"{split}.txt"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
