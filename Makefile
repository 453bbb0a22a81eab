# Everything sets itself up: the first target that needs Python creates .venv and installs the pins.
PROFILE ?= default
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONHASHSEED := 0

.PHONY: test unit lint book notebooks notebook bench clean help

help:
	@echo "make book [PROFILE=quick|default|paper]  run the notebooks with papermill and build the book"
	@echo "make test                                 lint, unit tests, quick-profile notebooks + book build, browser test"
	@echo "make unit                                 lint + fast unit tests only"
	@echo "make notebook NB=02_gaussian PROFILE=...  rerun one notebook (then make book to rebuild)"
	@echo "make clean                                remove trained models, results and the built book"

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check src tests notebooks scripts

unit: lint
	$(BIN)/pytest -m "not notebooks and not browser"

test: lint
	$(BIN)/pytest

clean:
	rm -rf data/models data/results data/cache book/_build book/executed artifacts
