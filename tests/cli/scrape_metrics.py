#!/usr/bin/python3
"""Scrapes a Cohort metrics endpoint and checks the Prometheus text format 0.0.4.

  scrape_metrics.py get URL
      One scrape; prints {"series": value, ...} as JSON, where a series is
      'name' or 'name{label="value",...}' exactly as exposed.
  scrape_metrics.py grow URL SERIES [--timeout S]
      Scrapes every 100 ms until SERIES is larger than in the first scrape
      (or S seconds pass: exit 1); prints {"first": {...}, "last": {...}}.
  scrape_metrics.py until URL SERIES MIN [--timeout S]
      Scrapes every 100 ms until SERIES is at least MIN (or S seconds pass:
      exit 1); prints {"last": {...}}.
  scrape_metrics.py raw HOST PORT REQUEST
      Sends REQUEST (Python escapes such as \\r\\n are decoded) on one
      connection and prints the status line of the answer, then whether the
      server closed the connection ("closed").

Exits 1 with a message naming the line when the exposition is malformed.
Standard library only.
"""
import json
import os
import re
import socket
import sys
import time
import urllib.request

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(rf"^({NAME})(\{{(?:{LABEL})(?:,{LABEL})*\}})? (\S+)$")
TYPES = {"counter", "gauge", "summary", "histogram", "untyped"}


def die(msg):
    print(f"scrape_metrics: {msg}", file=sys.stderr)
    sys.exit(1)


def parse(text, where):
    """Checks the exposition; returns {series: float}."""
    types, helped, seen_families, out = {}, set(), [], {}
    current = None
    for n, line in enumerate(text.split("\n"), 1):
        if line == "":
            if n != len(text.split("\n")):
                die(f"{where}: line {n}: empty line inside the exposition")
            continue
        if line.startswith("# HELP "):
            parts = line.split(" ", 3)
            if len(parts) < 4 or not re.fullmatch(NAME, parts[2]):
                die(f"{where}: line {n}: bad HELP line: {line!r}")
            if parts[2] in helped:
                die(f"{where}: line {n}: second HELP for {parts[2]}")
            helped.add(parts[2])
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4 or not re.fullmatch(NAME, parts[2]) or parts[3] not in TYPES:
                die(f"{where}: line {n}: bad TYPE line: {line!r}")
            if parts[2] in types:
                die(f"{where}: line {n}: second TYPE for {parts[2]}")
            types[parts[2]] = parts[3]
            current = parts[2]
            seen_families.append(current)
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            die(f"{where}: line {n}: not a sample line: {line!r}")
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        family = name
        if current and types[current] == "summary" and name in (current + "_sum", current + "_count"):
            family = current
        if family != current:
            die(f"{where}: line {n}: sample {name} is not under its family's TYPE line (current: {current})")
        try:
            v = float(value.replace("+Inf", "inf").replace("-Inf", "-inf"))
        except ValueError:
            die(f"{where}: line {n}: bad value {value!r}")
        series = name + labels
        if series in out:
            die(f"{where}: line {n}: duplicate series {series}")
        out[series] = v
    if seen_families != sorted(seen_families):
        die(f"{where}: families are not sorted by name")
    return out


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        if r.status != 200:
            die(f"{url}: HTTP {r.status}")
        ctype = r.headers.get("Content-Type", "")
        if not ctype.startswith("text/plain; version=0.0.4"):
            die(f"{url}: Content-Type {ctype!r}, expected text/plain; version=0.0.4")
        return parse(r.read().decode("utf-8"), url)


def main(argv):
    if len(argv) >= 2 and argv[0] == "get":
        print(json.dumps(scrape(argv[1]), sort_keys=True))
        return
    if len(argv) >= 3 and argv[0] == "grow":
        url, series = argv[1], argv[2]
        timeout = float(argv[argv.index("--timeout") + 1]) if "--timeout" in argv else 60.0
        first = scrape(url)
        deadline = time.monotonic() + timeout
        while True:
            last = scrape(url)
            if last.get(series, float("-inf")) > first.get(series, float("-inf")):
                print(json.dumps({"first": first, "last": last}, sort_keys=True))
                return
            if time.monotonic() > deadline:
                die(f"{url}: {series} did not grow in {timeout} s (first {first.get(series)}, last {last.get(series)})")
            time.sleep(0.1)
    if len(argv) >= 4 and argv[0] == "until":
        url, series, least = argv[1], argv[2], float(argv[3])
        timeout = float(argv[argv.index("--timeout") + 1]) if "--timeout" in argv else 60.0
        deadline = time.monotonic() + timeout
        while True:
            last = scrape(url)
            if last.get(series, float("-inf")) >= least:
                print(json.dumps({"last": last}, sort_keys=True))
                return
            if time.monotonic() > deadline:
                die(f"{url}: {series} did not reach {least} in {timeout} s (last {last.get(series)})")
            time.sleep(0.1)
    if len(argv) == 4 and argv[0] == "raw":
        host, port = argv[1], int(argv[2])
        request = argv[3].encode("latin-1").decode("unicode_escape").encode("latin-1")
        with socket.create_connection((host, port), timeout=10) as s:
            try:
                s.sendall(request)
            except (BrokenPipeError, ConnectionResetError):
                pass
            data = b""
            closed = False
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                data += chunk
        # One write: callers read the first line and close the pipe (| head -1).
        first = data.split(b"\r\n", 1)[0].decode("latin-1")
        try:
            sys.stdout.write(f"{first}\n{'closed' if closed else 'open'}\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader has what it wanted; keep the interpreter from failing at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    die(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
