#!/usr/bin/env python3
"""run.py: Weir's single test runner (what `make check` calls).

    python3 tests/run.py --builddir B --srcdir S [-k SUBSTRING] [--unit-only | --e2e-only]

1. Runs each cmocka unit-test binary B/tests/unit/test_* (executable, no extension) and counts
   its test cases from cmocka's summary lines; a binary that crashes, or exits non-zero although
   every case passed (a sanitizer report at exit), counts as failed.
2. Runs each end-to-end test: every function test_* of every S/tests/e2e/test_*.py, each in its
   own child process (its own process group, so whatever it started is cleaned up even when it
   hangs) with a time limit (the function's `timeout` attribute, default 30 s).
Prints "PASS name" / "FAIL name: reason" (with the tail of weir's stderr on failure) / "SKIP
name: reason" lines and ends with exactly one line "N passed, N failed"; exits 1 if any failed.
"""

import argparse
import glob
import importlib
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

DEFAULT_TIMEOUT = 30
UNIT_TIMEOUT = 300


def out(line=""):
    print(line, flush=True)


def indent(text, prefix="    ", limit=40):
    lines = text.rstrip("\n").splitlines()
    if len(lines) > limit:
        lines = lines[:limit // 2] + ["... (%d lines cut) ..." % (len(lines) - limit)] + lines[-limit // 2:]
    return "\n".join(prefix + l for l in lines)


# ---------------------------------------------------------------- unit tests (cmocka)

def unit_binaries(builddir):
    found = []
    for path in sorted(glob.glob(os.path.join(builddir, "tests", "unit", "test_*"))):
        name = os.path.basename(path)
        if "." in name or not os.path.isfile(path) or not os.access(path, os.X_OK):
            continue
        found.append(path)
    return found


def parse_cmocka(text):
    """Returns (passed, failed, ran, ok_names, failed_names, has_summary)."""
    passed = failed = running = 0
    has_summary = False
    ok_names, failed_names = [], []
    for line in text.splitlines():
        m = re.match(r"^\[  PASSED  \] (\d+) test", line)
        if m:
            passed += int(m.group(1))
            has_summary = True
            continue
        m = re.match(r"^\[  FAILED  \] (\d+) test", line)
        if m:
            failed += int(m.group(1))
            has_summary = True
            continue
        m = re.match(r"^\[==========\] (?:.*: )?Running (\d+) test", line)
        if m:
            running += int(m.group(1))
            continue
        m = re.match(r"^\[       OK \] (\S+)", line)
        if m:
            ok_names.append(m.group(1))
            continue
        m = re.match(r"^\[  (?:FAILED|ERROR)   ?\] (\S+)$", line)
        if m and m.group(1) not in failed_names and not m.group(1).startswith("---"):
            failed_names.append(m.group(1))
    return passed, failed, running, ok_names, failed_names, has_summary


def run_unit(path, totals):
    name = "unit/" + os.path.basename(path)
    env = dict(os.environ, CMOCKA_MESSAGE_OUTPUT="STDOUT")
    start = time.monotonic()
    cmd = [path]
    if os.environ.get("WEIR_VALGRIND") == "1":
        # Memory errors and leaks make the binary exit 99, which fails it below.
        cmd = ["valgrind", "-q", "--leak-check=full", "--show-leak-kinds=definite,indirect",
               "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99"] + cmd
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=UNIT_TIMEOUT, env=env,
                           cwd=os.path.dirname(path), start_new_session=True)
        text = p.stdout.decode("utf-8", "replace")
        rc = p.returncode
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode("utf-8", "replace")
        rc = "timeout after %ds" % UNIT_TIMEOUT
    except OSError as e:
        text, rc = str(e), "could not run: %s" % e
    passed, failed, running, ok_names, failed_names, has_summary = parse_cmocka(text)
    took = time.monotonic() - start
    for line in text.splitlines():
        if line.startswith("schema suite:"):
            out("NOTE " + line)     # the JSON-Schema-Test-Suite's own case counts
    if has_summary and rc == 0 and failed == 0:
        out("PASS %s (%d tests, %.1fs)" % (name, passed, took))
        totals[0] += passed
        return
    if not has_summary:
        # crashed or hung before the summary: the cases that printed OK passed, the rest failed
        passed = len(ok_names)
        failed = max(1, running - passed)
        reason = "no cmocka summary (exit status %s)" % rc
    elif failed == 0:
        failed = 1
        reason = "all %d cases passed but the binary exited with status %s" % (passed, rc)
    else:
        reason = "%d of %d cases failed: %s" % (failed, passed + failed, ", ".join(failed_names))
    totals[0] += passed
    totals[1] += failed
    out("FAIL %s: %s" % (name, reason))
    out(indent(text, limit=60))


# ---------------------------------------------------------------- entity schemas

def run_schema_check(srcdir, builddir, totals):
    """tests/schemas/check_schemas.py: the JSON Schemas in schemas/ against the 2020-12
    meta-schema (with Debian's python3-jsonschema, an independent validator), good and bad
    documents, and agreement with `weir -t`. Its own "N passed, N failed" line is added in."""
    script = os.path.join(srcdir, "tests", "schemas", "check_schemas.py")
    weir = os.path.join(builddir, "gateway", "weir")
    cmd = ["/usr/bin/python3", script] + (["--weir", weir] if os.access(weir, os.X_OK) else [])
    start = time.monotonic()
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=300, cwd=srcdir)
        text = p.stdout.decode("utf-8", "replace")
    except (OSError, subprocess.TimeoutExpired) as e:
        text, p = str(e), None
    m = re.search(r"^(\d+) passed, (\d+) failed$", text, re.M)
    if p is None or not m or (p.returncode != 0 and int(m.group(2)) == 0):
        out("FAIL schemas/check_schemas: no result (exit %s)" % (p.returncode if p else "-"))
        out(indent(text, limit=40))
        totals[1] += 1
        return
    passed, failed = int(m.group(1)), int(m.group(2))
    totals[0] += passed
    totals[1] += failed
    if failed:
        out("FAIL schemas/check_schemas: %d of %d checks failed" % (failed, passed + failed))
        out(indent(text, limit=60))
    else:
        out("PASS schemas/check_schemas (%d checks, %.1fs)" % (passed, time.monotonic() - start))


# ---------------------------------------------------------------- e2e tests

def discover_e2e(srcdir):
    """[(full name, module path, function name, timeout)] in file order."""
    e2e_dir = os.path.join(srcdir, "tests", "e2e")
    if e2e_dir not in sys.path:
        sys.path.insert(0, e2e_dir)
    tests = []
    for path in sorted(glob.glob(os.path.join(e2e_dir, "test_*.py"))):
        modname = os.path.splitext(os.path.basename(path))[0]
        try:
            mod = importlib.import_module(modname)
        except Exception:
            tests.append((modname + ".<import>", path, None, DEFAULT_TIMEOUT,
                          traceback.format_exc()))
            continue
        fns = []
        for fname, fn in vars(mod).items():
            if fname.startswith("test_") and inspect.isfunction(fn) and fn.__module__ == modname:
                fns.append((fn.__code__.co_firstlineno, fname, fn))
        for _, fname, fn in sorted(fns):
            tests.append(("%s.%s" % (modname, fname), path, fname,
                          getattr(fn, "timeout", DEFAULT_TIMEOUT), None))
    return tests


def run_one_child(spec):
    """In the child process: run one test function, write the result file, exit."""
    path, fname = spec.rsplit("::", 1)
    e2e_dir = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, e2e_dir)
    result = {"ok": False, "skip": False, "reason": ""}
    try:
        mod = importlib.import_module(os.path.splitext(os.path.basename(path))[0])
        harness = sys.modules.get("harness")
        try:
            getattr(mod, fname)()
            result["ok"] = True
        finally:
            if harness is not None:
                harness.stop_all()
        reports = getattr(harness, "SANITIZER_REPORTS", None) if harness is not None else None
        if reports:
            result["ok"] = False
            raise AssertionError("weir reported sanitizer errors:\n" + "\n".join(reports))
    except BaseException as e:  # noqa: B902 - report everything, including SystemExit
        harness = sys.modules.get("harness")
        if harness is not None and isinstance(e, harness.Skip):
            result["skip"] = True
            result["reason"] = str(e)
        else:
            msg = str(e) or e.__class__.__name__
            if not isinstance(e, AssertionError):
                msg = "%s: %s" % (e.__class__.__name__, msg)
            result["reason"] = msg
            tb = traceback.extract_tb(e.__traceback__)
            where = [f for f in tb if os.path.basename(f.filename).startswith("test_")]
            if where:
                f = where[-1]
                result["where"] = "%s:%d" % (os.path.basename(f.filename), f.lineno)
            result["traceback"] = traceback.format_exc()
    with open(os.environ["WEIR_E2E_RESULT"], "w") as f:
        json.dump(result, f)
    sys.stdout.flush()
    os._exit(0)


def weir_stderr_tails(root, lines=15):
    tails = []
    for path in sorted(glob.glob(os.path.join(root, "**", "weir.stderr"), recursive=True)):
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        text = "\n".join(text.splitlines()[-lines:])
        tails.append((os.path.relpath(path, root), text))
    return tails


def run_e2e_test(name, path, fname, limit, run_root, env, verbose):
    test_tmp = os.path.join(run_root, name)
    os.makedirs(test_tmp, exist_ok=True)
    result_path = os.path.join(test_tmp, "result.json")
    log_path = os.path.join(test_tmp, "output.log")
    child_env = dict(env, WEIR_E2E_TMP=test_tmp, WEIR_E2E_RESULT=result_path,
                     PYTHONDONTWRITEBYTECODE="1")
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--run-one",
                                 "%s::%s" % (path, fname)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, env=child_env,
                                start_new_session=True)
        timed_out = False
        try:
            proc.wait(limit)
        except subprocess.TimeoutExpired:
            timed_out = True
        # the child leads its own process group: end it and anything it left behind
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
    took = time.monotonic() - start
    result = None
    if not timed_out:
        try:
            with open(result_path) as f:
                result = json.load(f)
        except (OSError, ValueError):
            result = None
    if result and result.get("ok"):
        out("PASS %s (%.1fs)" % (name, took))
        shutil.rmtree(test_tmp, ignore_errors=True)
        return "pass"
    if result and result.get("skip"):
        out("SKIP %s: %s" % (name, result["reason"]))
        shutil.rmtree(test_tmp, ignore_errors=True)
        return "skip"
    if timed_out:
        reason = "timed out after %ds" % limit
    elif result is None:
        reason = "test process died (exit status %s) without a result" % proc.returncode
    else:
        reason = result.get("reason", "failed")
    first, _, rest = reason.partition("\n")
    where = (result or {}).get("where")
    out("FAIL %s: %s%s" % (name, first, " [%s]" % where if where else ""))
    if rest:
        out(indent(rest))
    if verbose and result and result.get("traceback"):
        out(indent(result["traceback"]))
    try:
        with open(log_path, "rb") as f:
            printed = f.read().decode("utf-8", "replace").strip()
    except OSError:
        printed = ""
    if printed:
        out("  test output:")
        out(indent(printed, limit=30))
    for rel, tail in weir_stderr_tails(test_tmp):
        out("  weir stderr tail (%s):" % rel)
        out(indent(tail if tail.strip() else "(empty)"))
    return "fail"


# ---------------------------------------------------------------- main

def main():
    sys.dont_write_bytecode = True      # the source tree may be read-only (make distcheck)
    if len(sys.argv) >= 3 and sys.argv[1] == "--run-one":
        run_one_child(sys.argv[2])
        return 0
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="Runs Weir's unit and end-to-end tests.")
    ap.add_argument("--builddir", default=os.path.dirname(here))
    ap.add_argument("--srcdir", default=os.path.dirname(here))
    ap.add_argument("-k", dest="keyword", default=None, help="only tests whose name contains this")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--unit-only", action="store_true")
    group.add_argument("--e2e-only", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="tracebacks on failure")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs of failed tests")
    args = ap.parse_args()
    builddir = os.path.abspath(args.builddir)
    srcdir = os.path.abspath(args.srcdir)

    totals = [0, 0]     # passed, failed
    start = time.monotonic()

    if not args.e2e_only:
        binaries = unit_binaries(builddir)
        if args.keyword:
            binaries = [b for b in binaries if args.keyword in "unit/" + os.path.basename(b)]
        if not binaries and not args.keyword:
            out("FAIL unit: no unit test binaries under %s/tests/unit (build them with "
                "`make check-build`)" % builddir)
            totals[1] += 1
        for path in binaries:
            run_unit(path, totals)
        if not args.keyword or args.keyword in "schemas/check_schemas":
            run_schema_check(srcdir, builddir, totals)

    if not args.unit_only:
        env = dict(os.environ)
        env.setdefault("WEIR_BIN", os.path.join(builddir, "gateway", "weir"))
        tests = discover_e2e(srcdir)
        if args.keyword:
            tests = [t for t in tests if args.keyword in t[0]]
        run_root = tempfile.mkdtemp(prefix="weir-e2e-run-")
        kept = False
        try:
            for name, path, fname, limit, import_error in tests:
                if import_error is not None:
                    out("FAIL %s: the module does not import" % name)
                    out(indent(import_error))
                    totals[1] += 1
                    continue
                status = run_e2e_test(name, path, fname, limit, run_root, env, args.verbose)
                if status == "pass":
                    totals[0] += 1
                elif status == "fail":
                    totals[1] += 1
        finally:
            if args.keep and totals[1]:
                kept = True
                out("NOTE failed tests' files kept in %s" % run_root)
            if not kept:
                shutil.rmtree(run_root, ignore_errors=True)
        out("NOTE e2e tests used %s" % env["WEIR_BIN"])

    out("NOTE took %.1fs" % (time.monotonic() - start))
    out("%d passed, %d failed" % (totals[0], totals[1]))
    return 1 if totals[1] else 0


if __name__ == "__main__":
    sys.exit(main())
