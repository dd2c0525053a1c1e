# WAL frames per event: schema 8's UNIQUE (source, dedupe_key) index on the events against schema 9's
# dedupe table with the writer's in-memory tail merged in sorted runs (src/store/sqlite/dedupe.rs).
# Counts, not time: independent of the machine's load. docs/PERFORMANCE.md, session 8.
# usage: python3 bench/wal_frames.py old|new EVENTS   (e.g. 1000000; writes a database under $TMPDIR)
import hashlib, os, sqlite3, sys, tempfile
N = int(sys.argv[2]); BATCH = 20; MERGE_AT = 32768; CHUNK = 1024; BODY = b"x" * 1000
mode = sys.argv[1]
path = os.path.join(tempfile.gettempdir(), f"wal_frames_{mode}.db")
for s in ("", "-wal", "-shm"):
    try: os.remove(path + s)
    except FileNotFoundError: pass
c = sqlite3.connect(path, isolation_level=None)
c.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-8000;")
uniq = ", UNIQUE (source, dedupe_key)" if mode == "old" else ""
c.execute(f"CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, source TEXT NOT NULL, dedupe_key TEXT NOT NULL, body BLOB{uniq})")
c.execute("CREATE TABLE dedupe (key BLOB NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (key, seq)) WITHOUT ROWID")
tail = {}; merging = None
def frames():
    return c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
windows = {0: "fresh store, events 0-100k", N - 100000: f"events {N-100000}-{N}"}
start = None; commits = 0
for b in range(N // BATCH):
    i0 = b * BATCH
    if i0 in windows:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)"); start = (i0, frames()); commits = 0
    c.execute("BEGIN")
    for i in range(i0, i0 + BATCH):
        key = "sha256:" + hashlib.sha256(str(i).encode()).hexdigest()
        c.execute("INSERT INTO events (id, source, dedupe_key, body) VALUES (?, 'bench', ?, ?)", (f"{i:020d}", key, BODY))
        if mode == "new":
            h = hashlib.sha256(b"bench\0" + key.encode()).digest()[:16]
            c.execute("SELECT seq FROM dedupe WHERE key = ?", (h,)).fetchall()
            tail[h] = c.execute("SELECT last_insert_rowid()").fetchone()[0]
    c.execute("COMMIT"); commits += 1
    if mode == "new" and (merging is not None or len(tail) >= MERGE_AT):
        if merging is None: merging = [sorted(tail.items()), 0]
        e, n = merging
        c.execute("BEGIN"); c.executemany("INSERT OR IGNORE INTO dedupe VALUES (?, ?)", e[n:n + CHUNK]); c.execute("COMMIT"); commits += 1
        merging[1] += CHUNK
        if merging[1] >= len(e):
            for k, s in e:
                if tail.get(k) == s: del tail[k]
            merging = None
    i1 = i0 + BATCH
    if start and i1 - start[0] == 100000:
        f = frames()
        print(f"{mode}: {windows[start[0]]}: {(f - start[1]) / 100000:.2f} WAL frames per event, {(f - start[1]) / (100000 / BATCH):.1f} per batch of {BATCH}", flush=True)
        start = None
    if i1 % 50000 == 0 and not start:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
