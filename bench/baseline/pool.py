#!/usr/bin/env python3
"""The script a user writes instead of throttle: N threads, one shared token bucket, urllib.

Each thread takes ids from a queue and GETs URL/items/{id}. A 429 or 5xx sleeps the server's
Retry-After (seconds) or else a backoff of 0.25 s doubling, then retries, at most 6 times.
One JSON line per id: {"item":id,"ok":true} or {"item":id,"ok":false,"status":S}.
No keep-alive: urllib opens a connection per call, as such scripts do.
"""
import argparse, json, queue, threading, time, urllib.error, urllib.request

p = argparse.ArgumentParser()
p.add_argument("--url", required=True)
p.add_argument("--input", required=True)
p.add_argument("--out", required=True)
p.add_argument("--threads", type=int, default=8)
p.add_argument("--rate", type=float, default=0)  # calls/s for all threads; 0: no bucket
p.add_argument("--burst", type=int, default=10)
a = p.parse_args()

lock, tokens, last = threading.Lock(), float(a.burst), time.monotonic()
def take():  # wait for a token of the shared bucket
    global tokens, last
    while a.rate > 0:
        with lock:
            now = time.monotonic()
            tokens, last = min(a.burst, tokens + (now - last) * a.rate), now
            if tokens >= 1:
                tokens -= 1
                return
            wait = (1 - tokens) / a.rate
        time.sleep(wait)

ids, out, out_lock = queue.Queue(), open(a.out, "w"), threading.Lock()
for line in open(a.input):
    if line.strip():
        ids.put(line.strip())

def work():
    while True:
        try:
            item = ids.get_nowait()
        except queue.Empty:
            return
        status, backoff = 0, 0.25
        for attempt in range(7):  # 1 call + 6 retries
            if attempt:
                time.sleep(wait)
                backoff *= 2
            take()
            try:
                with urllib.request.urlopen(f"{a.url}/items/{item}", timeout=30) as r:
                    r.read()
                    status = r.status
                break
            except urllib.error.HTTPError as e:
                status, ra = e.code, e.headers.get("Retry-After")
                if status != 429 and status < 500:
                    break
                wait = float(ra) if ra and ra.isdigit() else backoff
            except OSError:
                status, wait = 0, backoff
        row = {"item": item, "ok": status == 200}
        if status != 200:
            row["status"] = status
        with out_lock:
            out.write(json.dumps(row) + "\n")

threads = [threading.Thread(target=work) for _ in range(a.threads)]
for t in threads:
    t.start()
for t in threads:
    t.join()
out.close()
