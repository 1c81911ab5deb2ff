# The two commands of the README: `make run` serves the twin, `make test` runs the suite.
# Each sets itself up on a fresh machine with only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench install clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/twin-server serve

# The browser tests drive Debian's Chromium (Playwright never downloads a browser); the
# multi-machine tests share their rate limits through Debian's redis-server; the front tests run
# Debian's nginx, as a process of their own on a loopback port.
CHROMIUM := /usr/bin/chromium
REDIS_SERVER := /usr/bin/redis-server
NGINX := /usr/sbin/nginx
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

test: $(STAMP) $(CHROMIUM) $(REDIS_SERVER) $(NGINX)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq chromium

$(REDIS_SERVER):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq --no-install-recommends redis-server

$(NGINX):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq --no-install-recommends nginx

# The benchmarks drive the servers with Debian's wrk; `make bench BENCH=bench_capacity` runs one.
WRK := /usr/bin/wrk
BENCH_STAMP := $(VENV)/.bench-installed

bench: $(STAMP) $(BENCH_STAMP) $(WRK)
	$(BIN)/python -m benchmarks $(BENCH)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

$(WRK):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq wrk

clean:
	rm -rf $(VENV) build *.egg-info
