# Everything sets itself up: the first target that needs Python creates .venv and installs the pins.
PROFILE ?= default
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONHASHSEED := 0

.PHONY: test test-paper unit lint book notebooks notebook bench clean help widget-assets lab

help:
	@echo "make book [PROFILE=quick|default|paper]  run the notebooks with papermill and build the book"
	@echo "make test                                 lint, unit tests, quick-profile notebooks + book build, browser test"
	@echo "make test-paper                           the paper profile's every chapter on a tiny folder (CI runs it too)"
	@echo "make unit                                 lint + the fast unit tests (no notebooks, browser or slow tests)"
	@echo "make lab [PROFILE=quick|default]          open the chapters in JupyterLab (the profile of the last make book)"
	@echo "make notebook NB=02_gaussian PROFILE=...  rerun one notebook (then make book to rebuild)"
	@echo "make bench [PROFILE=...]                  rerun only the performance chapter (after make book)"
	@echo "make widget-assets                        npm ci + copy the pinned widget and MathJax scripts into book/_static/"
	@echo "make clean                                remove trained models, results and the built book"

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	touch $@

# The static book's sliders and formulas must work offline: the ipywidgets HTML manager (embed.js, with its
# fonts) and MathJax, pinned in package-lock.json, are served from book/_static/ instead of a CDN.
ASSETS := book/_static
WIDGET_JS := $(ASSETS)/ipywidgets/embed.js
HTML_MANAGER := node_modules/@jupyter-widgets/html-manager/dist
MATHJAX := node_modules/mathjax/es5

WIDGET_SHIM := $(ASSETS)/ipywidgets/mathjax-hub-shim.js

widget-assets: $(WIDGET_JS) $(WIDGET_SHIM)

# Hand-written, tracked in src/js/: embed.js calls MathJax 2's Hub.Queue, the book loads MathJax 3.
$(WIDGET_SHIM): src/js/mathjax_hub_shim.js $(WIDGET_JS)
	cp src/js/mathjax_hub_shim.js $@

$(WIDGET_JS): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund
	rm -rf $(ASSETS)/ipywidgets $(ASSETS)/mathjax
	mkdir -p $(ASSETS)/ipywidgets $(ASSETS)/mathjax
	cp $(HTML_MANAGER)/embed.js $(HTML_MANAGER)/embed.js.LICENSE.txt $(HTML_MANAGER)/*.woff $(HTML_MANAGER)/*.woff2 \
	   $(HTML_MANAGER)/*.ttf $(HTML_MANAGER)/*.eot $(HTML_MANAGER)/*.svg $(ASSETS)/ipywidgets/
	cp -R $(MATHJAX)/tex-mml-chtml.js $(MATHJAX)/a11y $(MATHJAX)/adaptors $(MATHJAX)/input $(MATHJAX)/output \
	   $(MATHJAX)/sre $(MATHJAX)/ui node_modules/mathjax/LICENSE $(ASSETS)/mathjax/
	touch $@

# ART and Foolbox, the yardsticks of the performance chapter and the independent re-attacks of the tests:
# `make book`, `make bench` and `make test` install them.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): requirements-bench.txt $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt
	touch $@

book: $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP) widget-assets
	$(BIN)/python scripts/run_book.py --profile $(PROFILE) --only 08_performance $(if $(DATA),--data $(DATA))

book: $(STAMP) widget-assets
	$(BIN)/python scripts/run_book.py --profile $(PROFILE) $(if $(DATA),--data $(DATA))

notebook: $(STAMP) widget-assets
	@test -n "$(NB)" || (echo "usage: make notebook NB=02_gaussian [PROFILE=default]"; exit 2)
	$(BIN)/python scripts/run_book.py --profile $(PROFILE) --only $(NB) $(if $(DATA),--data $(DATA))

# JupyterLab on notebooks/, with the project's kernel. PROFILE only when given: else the profile of the last build.
lab: $(STAMP)
	$(BIN)/python scripts/lab.py $(if $(filter command line environment,$(origin PROFILE)),--profile $(PROFILE)) $(LAB_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests notebooks scripts

# Tests run in TEST_JOBS pytest-xdist workers: the tests of the quick-profile book in one of them, in order, while the
# other takes the rest, a whole test file at a time (tests/conftest.py). TEST_JOBS=0 runs them in this process, one at a time.
TEST_JOBS ?= 2
PYTEST := $(BIN)/pytest $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --no-loadscope-reorder)

unit: lint
	$(PYTEST) -m "not notebooks and not browser and not slow"

test: lint widget-assets $(BENCH_STAMP)
	$(PYTEST) -m "not paper"

# The paper profile end to end on a tiny ImageNet-style folder: every chapter once more (about 2.5 min), so not in the
# inner loop of make test; .ci/run runs both.
test-paper: $(BENCH_STAMP)
	$(BIN)/pytest -m paper

clean:
	rm -rf data/models data/results data/cache data/live-slider book/_build book/executed artifacts $(ASSETS)/ipywidgets $(ASSETS)/mathjax \
	   $(ASSETS)/live-slider
