"""Drives headless Chromium over the DevTools protocol (on a pipe: --remote-debugging-pipe, fds 3
and 4), for tests/it/ui.rs: opens a page, then runs steps, and prints the page's DOM at the end.
Standard library only.

usage: cdp.py CHROMIUM URL STEPS_JSON
STEPS_JSON is a list of {"wait": "<js expression>"} (polled until truthy, at most 10 s) and
{"eval": "<js expression>"}; a step that fails prints why and exits 1.
"""

import json
import os
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self, binary):
        self.profile = tempfile.TemporaryDirectory()
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()

        # The child's close_fds runs after this, keeping only pass_fds: the pipe must be at 3 and 4
        # by then (copied high first, in case one of them already is 3 or 4).
        def fds():
            r, w = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-pipe", "--user-data-dir=" + self.profile.name, "about:blank"],
            preexec_fn=fds, pass_fds=(3, 4),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.next_id = 0
        self.buffer = b""

    def send(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_child, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self.read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def read(self):
        while b"\0" not in self.buffer:
            chunk = os.read(self.from_child, 65536)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self.buffer += chunk
        msg, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(msg)

    def close(self):
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main():
    binary, url, steps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    b = Browser(binary)
    try:
        target = b.send("Target.createTarget", {"url": url})["targetId"]
        session = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

        def evaluate(expr):
            r = b.send("Runtime.evaluate", {"expression": expr, "awaitPromise": True, "returnByValue": True},
                       session)
            if "exceptionDetails" in r:
                raise RuntimeError(f"{expr}: {r['exceptionDetails'].get('exception', r['exceptionDetails'])}")
            return r["result"].get("value")

        for step in steps:
            if "wait" in step:
                deadline = time.time() + 10
                while not evaluate("!!(" + step["wait"] + ")"):
                    if time.time() > deadline:
                        print(f"timed out waiting for: {step['wait']}\n{evaluate('document.documentElement.outerHTML')}")
                        sys.exit(1)
                    time.sleep(0.1)
            else:
                evaluate(step["eval"])
        print(evaluate("document.documentElement.outerHTML"))
    finally:
        b.close()


if __name__ == "__main__":
    main()
