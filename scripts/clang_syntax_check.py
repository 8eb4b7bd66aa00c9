#!/usr/bin/env python3
"""Runs Clang's front end (-fsyntax-only, the build's own flags, -Werror included) over every source of a
CMake build that the build did not compile: what scripts/test.sh's sanitizer pass uses to check that the
example programs and the slow tests still build with Clang without paying for their sanitized code
generation (the front end parses, instantiates every template and warns; it does not optimise or emit).

    scripts/clang_syntax_check.py BUILD_DIR [--jobs N] [--only SUBSTRING]

BUILD_DIR must have been configured with -DCMAKE_EXPORT_COMPILE_COMMANDS=ON and built (the sources whose
object files exist were compiled for real and are skipped). Expected failures (tests/compile_fail/) and
other build trees' sources are never checked. Exit status 1 if any source fails, with Clang's messages.
"""
import argparse
import concurrent.futures
import json
import os
import shlex
import subprocess
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build_dir")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--only", default="", help="check only the sources whose path contains this")
    args = ap.parse_args()
    db_path = os.path.join(args.build_dir, "compile_commands.json")
    try:
        with open(db_path, encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        print(f"clang_syntax_check: cannot read {db_path}: {e} (configure with -DCMAKE_EXPORT_COMPILE_COMMANDS=ON)",
              file=sys.stderr)
        return 2

    todo = []
    for e in entries:
        source = e["file"]
        if "/compile_fail/" in source or not source.endswith(".cpp") or args.only not in source:
            continue
        argv = shlex.split(e["command"]) if "command" in e else list(e["arguments"])
        if argv and os.path.basename(argv[0]) == "ccache":
            argv = argv[1:]
        output = e.get("output")
        if output is None and "-o" in argv:
            output = argv[argv.index("-o") + 1]
        if output and os.path.exists(os.path.join(e["directory"], output)):
            continue  # compiled for real by the build
        # Drop the object and dependency-file outputs; keep every flag that decides what Clang accepts.
        clean = []
        skip = False
        for a in argv:
            if skip:
                skip = False
                continue
            if a in ("-o", "-MF", "-MT", "-MQ"):
                skip = True
                continue
            if a in ("-MD", "-MMD"):
                continue
            clean.append(a)
        todo.append((source, e["directory"], clean + ["-fsyntax-only"]))

    if not todo:
        print("clang_syntax_check: nothing to check (every source was compiled)")
        return 0
    print(f"clang_syntax_check: {len(todo)} sources through the front end, {args.jobs} at a time", flush=True)
    t0 = time.monotonic()

    def run(item):
        source, directory, argv = item
        start = time.monotonic()
        r = subprocess.run(argv, cwd=directory, capture_output=True, text=True)
        return source, r.returncode, r.stdout + r.stderr, time.monotonic() - start

    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for source, rc, out, seconds in pool.map(run, todo):
            rel = os.path.relpath(source)
            if rc != 0:
                failed += 1
                print(f"[syntax] FAILED {rel} ({seconds:.0f} s):\n{out}", flush=True)
            else:
                print(f"[syntax] ok {rel} ({seconds:.0f} s)", flush=True)
    print(f"clang_syntax_check: {len(todo) - failed} of {len(todo)} passed in {time.monotonic() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
