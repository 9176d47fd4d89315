"""Shared fixtures for Laminar's end-to-end tests: they start the real
`laminar` binary on a free 127.0.0.1 port with a fresh data directory and
stop it (SIGTERM, then SIGKILL if it hangs) when the test ends."""

import os
import pathlib
import signal
import subprocess
import tempfile
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def laminar_bin():
    env = os.environ.get("LAMINAR_BIN")
    if env:
        return env
    # The most recently built one: a stale release binary must not shadow a fresh debug build.
    built = [p for p in (ROOT / "target" / prof / "laminar" for prof in ("release", "debug")) if p.exists()]
    if built:
        return str(max(built, key=lambda p: p.stat().st_mtime))
    raise RuntimeError("laminar binary not found: run `cargo build --bin laminar` or set LAMINAR_BIN")


class Broker:
    """One laminar process. `restart()` keeps the data directory."""

    def __init__(self, data_dir, extra_args=()):
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = 0
        self.stderr_lines = []

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=30):
        # Reuse the port on restart so clients' bootstrap stays valid.
        args = [laminar_bin(), "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir),
                "--shards", "2", "--no-pin"] + self.extra_args
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line_box = []

        def read_first_line():
            line_box.append(self.proc.stdout.readline())

        t = threading.Thread(target=read_first_line, daemon=True)
        t.start()
        t.join(timeout)
        line = line_box[0] if line_box else ""
        if not line.startswith("listening on "):
            self.proc.kill()
            err = self.proc.stderr.read()
            raise RuntimeError(f"laminar did not start: {line!r}\n{err}")
        self.port = int(line.strip().rsplit(":", 1)[1])
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        return self

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None:
            return None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            raise AssertionError("laminar did not exit within %ss of %s" % (timeout, sig))
        finally:
            self.proc = None
        return rc

    def restart(self, sig=signal.SIGTERM):
        self.stop(sig)
        return self.start()

    def log_text(self):
        return "".join(self.stderr_lines)


@pytest.fixture
def broker_factory():
    started = []
    dirs = []

    def make(extra_args=()):
        d = tempfile.TemporaryDirectory(prefix="laminar-e2e-")
        dirs.append(d)
        b = Broker(pathlib.Path(d.name), extra_args).start()
        started.append(b)
        return b

    yield make
    for b in started:
        if b.proc is not None:
            b.proc.kill()
            b.proc.wait()
    for d in dirs:
        d.cleanup()


@pytest.fixture
def broker(broker_factory):
    return broker_factory()
