# The two commands a newcomer needs are `make run` and `make test`; the rest is for daily work.
SHELL := /bin/bash
PY := .venv/bin/python
LOCAL := deploy/local

.PHONY: run test up down status setup lint chaos drill bench clean

run: ## install what is missing, start everything, load sample drafts, print the reader URL (Ctrl-C stops)
	@$(LOCAL)/bootstrap.sh
	@$(LOCAL)/stack.sh run

test: ## the whole suite, real Kafka and Redis included
	@$(LOCAL)/bootstrap.sh --test
	@$(LOCAL)/stack.sh infra
	$(PY) -m pytest $(PYTEST_ARGS)

up: ## start in the background whatever is not running; returns when all is ready
	@$(LOCAL)/bootstrap.sh
	@$(LOCAL)/stack.sh up

down: ## stop the services, Kafka and Redis
	@$(LOCAL)/stack.sh down

status:
	@$(LOCAL)/stack.sh status

setup:
	@$(LOCAL)/bootstrap.sh --test

lint: setup
	$(PY) -m ruff check shared services tests bench
	$(PY) -m mypy shared services

chaos: setup ## the full fault-injection matrix
	@$(LOCAL)/stack.sh infra
	$(PY) -m pytest -m chaos tests/chaos --chaos-profile=long

drill: setup ## scaling (1, 3, 2 instances) and rolling-restart drills under load, alone
	@$(LOCAL)/stack.sh infra
	$(PY) -m pytest -m drill tests/e2e

BENCHMARKS = serving_bench "publisher_bench freshness" "publisher_bench rebuild" ingest_bench related_scale \
	"comments_bench --comments 40000" outbox_bench

bench: setup ## every benchmark of README's table, one after the other (an hour or more)
	@$(LOCAL)/stack.sh infra
	@failed=""; for b in $(BENCHMARKS); do echo "== python -m bench.$$b"; $(PY) -m bench.$$b || failed="$$failed\n  $$b"; done; \
	if [ -n "$$failed" ]; then printf "below target or failed:$$failed\n"; exit 1; fi

clean: down
	rm -rf .run
