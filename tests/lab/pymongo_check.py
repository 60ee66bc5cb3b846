"""Second, independent client check of the MongoDB simulator (pymongo).

Run by tests/lab/tests/mongosim_pymongo.rs:
  python3 pymongo_check.py URI
Phase 1: discover the replica set, write with w:"majority", read back,
print one JSON line and wait for a line on stdin (the Rust side cuts the
primary's region meanwhile). Phase 2: keep writing with w:1 until a new
primary accepts, print the final JSON line.
"""
import json
import sys
import time

from pymongo import MongoClient, WriteConcern
from pymongo.errors import PyMongoError

uri = sys.argv[1]
client = MongoClient(uri, serverSelectionTimeoutMS=30000, heartbeatFrequencyMS=500)
client.admin.command("ping")
deadline = time.time() + 30
while client.primary is None and time.time() < deadline:
    time.sleep(0.05)
db = client.get_database("py")
majority = db.get_collection("docs", write_concern=WriteConcern(w="majority", wtimeout=20000))
for i in range(10):
    majority.insert_one({"_id": i, "phase": 1})
count = db.docs.count_documents({"phase": 1})
status = client.admin.command("replSetGetStatus")
first = client.primary
print(json.dumps({
    "phase": 1,
    "primary": "%s:%d" % first,
    "hosts": sorted("%s:%d" % h for h in client.nodes),
    "set": status["set"],
    "count": count,
}), flush=True)

sys.stdin.readline()
deadline = time.time() + 60
written = False
while time.time() < deadline and not written:
    try:
        db.docs.insert_one({"_id": 100, "phase": 2})
        written = True
    except PyMongoError:
        time.sleep(0.1)
second = client.primary
print(json.dumps({
    "phase": 2,
    "written": written,
    "primary": "%s:%d" % second if second else None,
    "count": db.docs.count_documents({}),
}), flush=True)
