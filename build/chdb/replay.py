"""Replays statements on current ClickHouse, embedded in-process by chdb (PyPI chdb-core).

analytics' TestCurrentClickHouse records every statement zenklav sends to ClickHouse 18.16
and runs them here too, to check that they run on current releases with the same answers:

    python replay.py PLAN.json

PLAN.json is {"database": NAME, "steps": [{"sql": TEXT, "read": BOOL}, ...]}. The statements
run in order on a fresh session (in a temporary folder, removed at the end), in the database
NAME, which is created first as analytics.Open creates it. The time zone is the process's (TZ):
the test sets 18.16's, so times bound into the SQL and times printed mean the same.

Standard output is JSON lines: first {"version": ..., "timezone": ...}, then one line per step:
{"types": [...], "rows": [[...], ...]} for a read (its JSONCompact answer), {} for another
statement, or {"error": MESSAGE} when ClickHouse refused it. Every step runs, whatever failed.
"""

import json
import os
import shutil
import sys
import tempfile


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: replay.py PLAN.json")
    with open(sys.argv[1], encoding="utf-8") as f:
        plan = json.load(f)
    try:
        from chdb import session
    except ImportError as e:
        sys.exit(f"chdb is not installed for {sys.executable}: {e} (bash build/deps.sh chdb installs it)")

    # In memory when the machine has /dev/shm: each insert writes a part, a few files.
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    path = tempfile.mkdtemp(prefix="zenklav-chdb-", dir=shm)
    try:
        s = session.Session(path)
        try:
            run(s, plan, sys.stdout)
        finally:
            s.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run(s, plan, out):
    db = plan["database"]
    s.query(f"CREATE DATABASE IF NOT EXISTS {db}")
    s.query(f"USE {db}")
    # 18.16 writes an inserted block as it is; current releases collapse a Replacing- or
    # CollapsingMergeTree block's rows on insert unless told not to. Off, both hold the very
    # rows zenklav wrote, and a count of stored rows means the same on both.
    s.query("SET optimize_on_insert = 0")
    version, tz = json.loads(s.query("SELECT version(), timezone()", "JSONCompact").bytes())["data"][0]
    emit(out, {"version": version, "timezone": tz})
    for step in plan["steps"]:
        try:
            if step["read"]:
                answer = json.loads(s.query(step["sql"], "JSONCompact").bytes())
                emit(out, {"types": [m["type"] for m in answer["meta"]], "rows": answer["data"]})
            else:
                s.query(step["sql"])
                emit(out, {})
        except Exception as e:  # chdb raises its ChdbError, or RuntimeError in older releases
            emit(out, {"error": str(e)})


def emit(out, value):
    out.write(json.dumps(value, ensure_ascii=False))
    out.write("\n")


if __name__ == "__main__":
    main()
