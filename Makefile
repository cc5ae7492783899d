# Two commands do all set-up on a fresh machine:
#   make run    create .venv, install, evaluate the shipped self-classifying model (plots + GIF in runs/pretrained)
#   make test   create .venv, install, run the test suite
#   make docs   the API reference (runs/site/index.html), with the static playground
#   make playground   the static playground (runs/playground/; needs npm)
# CUDA users: make run TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN     = $(VENV)/bin

.PHONY: run test docs playground wheel-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[test,tensorboard,docs,distributed,export]'  # distributed: Ray, for the --ray tests
	touch $@

run: $(VENV)/.installed
	$(BIN)/localrules run mnist-selfclassify --pretrained --out runs/pretrained

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -rs

# The API reference from the docstrings (mkdocs + mkdocstrings), into runs/site/
# with the static playground built into docs/ first (runs/site/static-playground/; needs npm)
docs: $(VENV)/.installed
	$(BIN)/python scripts/build-playground --out docs/static-playground
	$(BIN)/mkdocs build --strict

# The static playground: the shipped models in the browser, no server (python -m http.server -d runs/playground)
playground: $(VENV)/.installed
	$(BIN)/python scripts/build-playground --out runs/playground

# Build the wheel, install it in a fresh venv and run the CLI from outside the checkout.
wheel-check: $(VENV)/.installed
	rm -rf dist /tmp/localrules-wheel-venv
	$(BIN)/pip wheel -q --no-deps -w dist .
	$(PYTHON) -m venv /tmp/localrules-wheel-venv
	/tmp/localrules-wheel-venv/bin/pip install -q $(TORCH) dist/localrules-*.whl
	cd /tmp && /tmp/localrules-wheel-venv/bin/localrules --help
	cd /tmp && /tmp/localrules-wheel-venv/bin/python -c "import localrules.cli.main, localrules as lr; from localrules.tasks import mnist_selfclassify as m; \
	  [lr.load_selfclassifier(m.pretrained_path(k)) for k in ('l2', 'ce', 'robust')]; \
	  [lr.load_rule(n) for n in ('metanca-mnist', 'metanca-mnist-dc', 'metanca-mnist-relative')]; \
	  [lr.load_restorer(n) for n in ('hybrid', 'ca', 'cnn-ae', 'classifier')]; print('every shipped model loads from the wheel')"

clean:
	rm -rf $(VENV) dist build *.egg-info
