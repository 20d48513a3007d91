# Two commands on a fresh machine with Python 3.11+: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: run test lint format migrate demo check-deploy clean screenshots

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

migrate: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py createcachetable

demo: migrate
	$(PY) manage.py seed_demo

## Set up everything and start the web server and the background worker.
run: demo
	$(PY) manage.py serve

## Set up and run the whole test suite (SQLite, or DATABASE_URL's database).
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## A screenshot of every main page into docs/screenshots/ (a fresh demo, headless Chromium).
screenshots: $(STAMP)
	$(PY) -m tests.screenshots

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache staticfiles
