# Two commands do all the setup on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
export PREFECT_HOME ?= $(CURDIR)/var/prefect
export TUTORMAX_HOME ?= $(CURDIR)
# no telemetry: these machines (and many production networks) reach no outside hosts
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install demo ui test serve sink tracker cluster cluster-down cluster-status bench-delivery bench-tracker bench-analytics bench-ratelimit bench-scaleout bench-acquires smtp-sink clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(PY) -m tutormax.cli demo

# Prefect's UI over the runs kept in $(PREFECT_HOME)/prefect.db (the demo's among them) at http://127.0.0.1:4200.
# The UI calls the API at PREFECT_API_URL: it must name this server, whatever the shell has set.
ui: $(STAMP)
	@mkdir -p "$(PREFECT_HOME)"
	PREFECT_API_URL=http://127.0.0.1:4200/api $(PY) -m prefect server start --host 127.0.0.1 --port 4200

test: $(STAMP)
	@mkdir -p "$(PREFECT_HOME)"  # Prefect warns at import when its home's parent is missing
	$(PY) -m pytest -q

# Serves every deployment in prefect.yaml; start `prefect server start` first to watch runs in the UI.
serve: $(STAMP)
	$(PY) -m tutormax.cli serve

sink: $(STAMP)
	$(PY) -m tutormax.cli sink

# The tracker under gunicorn (TRACKER_BIND, TRACKER_WORKERS; TRACKING_BASE_URL must point at it).
tracker: $(STAMP)
	$(PY) -m tutormax.cli tracker

# Scale-out on one machine (docs/scaling.md): a Prefect server on PostgreSQL (a database of its own,
# CLUSTER_PREFECT_DATABASE), the tutormax-mail work pool, every deployment, the automation that marks
# runs Crashed when heartbeats stop, CLUSTER_WORKERS (2) workers and the tracker; logs in var/cluster/.
# The application's database is DATABASE_URL (PostgreSQL for a cluster: SQLite serializes the workers).
cluster: $(STAMP)
	$(PY) -m tutormax.cli cluster up

# stops exactly what `make cluster` started
cluster-down:
	$(PY) -m tutormax.cli cluster down

cluster-status:
	$(PY) -m tutormax.cli cluster status

# Postfix's smtp-sink: a C sink fast enough not to bound the delivery benchmark.
smtp-sink:
	@command -v smtp-sink >/dev/null || { \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null; }

bench-delivery: $(STAMP) smtp-sink
	$(PY) benchmarks/delivery.py

bench-tracker: $(STAMP)
	$(PY) benchmarks/tracker.py

bench-analytics: $(STAMP)
	$(PY) benchmarks/analytics.py

# two deliver-outbox processes under a 3,000/min send-rate limit (about 2.5 minutes)
bench-ratelimit: $(STAMP) smtp-sink
	$(PY) benchmarks/ratelimit.py

# a Prefect server on PostgreSQL and two process workers send 20,000 due messages into smtp-sink; one
# worker's host is killed mid-batch and comes back (about 3 minutes)
bench-scaleout: $(STAMP) smtp-sink
	$(PY) benchmarks/scaleout.py

# send-rate limit acquires a Prefect server on PostgreSQL answers a second (about a minute)
bench-acquires: $(STAMP)
	$(PY) benchmarks/acquires.py

clean:
	rm -rf var reports
