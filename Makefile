# Two entry points: `make run` (whole pipeline, embedded defaults; RUN_ARGS="--without
# inventory" leaves a consumer out) and `make test`.
# Both create .venv and install the project on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Material for MkDocs prints a banner on every build (its end of life, May 2027, and its
# successor): noted once here rather than in every test log.
export NO_MKDOCS_2_WARNING := 1

.PHONY: run test test-fast bench docs clean chromium caddy promtool alerts wrk

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python >= 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

RUN_ARGS ?=
run: $(STAMP)
	$(BIN)/python -m tools.devstack $(RUN_ARGS)

# Debian's Chromium and its WebDriver for the browser tests (tests/test_browser.py), installed
# with apt-get when either is missing (CI runs as root; elsewhere through sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

# promtool and amtool, from Debian's prometheus and prometheus-alertmanager packages, check
# the alerting rules, their unit tests and both configurations (`make alerts`). Installed
# with apt-get when either is missing, as chromium is, but only the two programs are taken
# out of the packages (into /usr/local/bin): installing the packages would also add, enable
# and on most hosts start a Prometheus and an Alertmanager service, which must not run here.
promtool:
	@command -v promtool >/dev/null && command -v amtool >/dev/null || { \
	  tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(SUDO) apt-get update -q && \
	  ( cd "$$tmp" && apt-get download -q $(if $(SUDO),,-o APT::Sandbox::User=root) \
	      prometheus prometheus-alertmanager && \
	    for deb in ./*.deb; do dpkg-deb -x "$$deb" .; done ) && \
	  $(SUDO) install -m 755 "$$tmp/usr/bin/promtool" "$$tmp/usr/bin/amtool" /usr/local/bin/; }

# The alerting rules and their promtool unit tests (docs/alerts.md), prometheus.yml with
# those rules (docker-compose mounts them at /etc/prometheus/rules: the copy checked points
# at the checkout's instead), and the Alertmanager configuration.
alerts: promtool
	promtool check rules deploy/prometheus/rules/*.yml
	promtool test rules deploy/prometheus/tests/*.yml
	mkdir -p .run
	sed 's|/etc/prometheus/rules/|$(CURDIR)/deploy/prometheus/rules/|' deploy/prometheus/prometheus.yml > .run/prometheus.yml
	grep -q '$(CURDIR)/deploy/prometheus/rules/' .run/prometheus.yml
	promtool check config .run/prometheus.yml
	amtool check-config deploy/alertmanager/alertmanager.yml

# Debian's Caddy for the TLS proxy test (tests/test_tls_proxy.py runs deploy/caddy/Caddyfile
# with it), installed with apt-get when missing. The package may start a system service that
# serves :80 with its sample Caddyfile: stopped and disabled at once, since the test runs
# its own caddy on free ports.
caddy:
	@command -v caddy >/dev/null || { \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q caddy && \
	  if [ -d /run/systemd/system ]; then $(SUDO) systemctl disable --now caddy; fi; }
	@! pgrep -f '[c]addy run .*--config /etc/caddy/Caddyfile' >/dev/null || { \
	  echo "the caddy system service is running (it serves :80): stop it"; exit 1; }

test: $(STAMP) chromium caddy alerts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mkdocs build --strict --site-dir .run/site
	$(BIN)/python manage.py check_event_contracts
	$(BIN)/python -m pytest

# Everything but the slow fault tests: for the edit-test loop (CI runs `make test`).
test-fast: $(STAMP) chromium caddy
	$(BIN)/python -m pytest -m "not slow"

# The pipeline as deployed, measured (docs/benchmarks.md). Uses KAFKA_BOOTSTRAP_SERVERS,
# REDIS_URL and DATABASE_URL (PostgreSQL) if set; otherwise a local Tansu broker, a local
# redis-server and a fresh `ecommerce_bench` database on the local PostgreSQL. Options:
# BENCH_ARGS, e.g. make bench BENCH_ARGS="--gateway-latency-ms 150".
BENCH_OUT ?= .run/bench
# Debian's wrk, for the web tier's comparison with the bare view (tools/bench/web.py),
# installed with apt-get when missing, as chromium is. Without it the bench uses its own
# load generator.
wrk:
	@command -v wrk >/dev/null || { \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }

bench: $(STAMP) wrk
	mkdir -p $(BENCH_OUT)
	$(BIN)/python -m tools.bench --json $(BENCH_OUT)/bench.json --plot $(BENCH_OUT)/bench.png $(BENCH_ARGS)

# The documentation site (docs/, mkdocs.yml), rebuilt on every edit, at http://127.0.0.1:8001/
# (mkdocs.yml moves it off 8000, the port of `make run`).
docs: $(STAMP)
	$(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) .run db.sqlite3*
