"""Workers: `workers` threads, each with its own event loop and listener."""

import os
import threading

from harness import Conn, assert_eq, echo, gateway


def thread_count(pid):
    return len(os.listdir("/proc/%d/task" % pid))


def test_workers_setting_starts_that_many_worker_threads():
    counts = {}
    for n in (1, 3):
        with gateway(workers=n) as (w, b):
            counts[n] = thread_count(w.pid)
    assert_eq(counts[3] - counts[1], 2, "extra threads with workers 3 instead of 1 (%r)" % counts)


def test_several_workers_serve_concurrent_clients():
    with gateway(workers=2) as (w, b):
        results = []
        lock = threading.Lock()

        def client(i):
            try:
                with Conn(w.port, timeout=10) as c:
                    for j in range(5):
                        r = c.request("GET", "/c%d/%d?delay_ms=20" % (i, j))
                        ok = r.status == 200 and echo(r)["path"] == "/c%d/%d" % (i, j)
                        with lock:
                            results.append(ok)
            except Exception as e:
                with lock:
                    results.append(e)
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert_eq(results.count(True), 80, "successful requests of 80 (%r)" %
                  [r for r in results if r is not True][:5])
