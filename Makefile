# Two commands do all set-up on a fresh machine:
#   make run    create .venv, install torch and the package (no extras), evaluate the shipped
#               self-classifying model (plots + GIF in runs/pretrained)
#   make test   also install the test extras (pytest, Playwright, TensorBoard, Ray, ONNX), run the test suite
#   make docs   also install the docs and export extras: the API reference (runs/site/index.html),
#               with the static playground
#   make playground   also install the export extra: the static playground (runs/playground/; needs npm)
# CUDA users: make run TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN     = $(VENV)/bin

.PHONY: run test docs playground wheel-check clean

# the main job: torch and the package with its own dependencies, nothing optional
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e .
	touch $@

# the test suite's extras: browser = Playwright (the playground's browser tests, which also need
# Debian's chromium), tensorboard (--tensorboard), distributed = Ray (the --ray tests), export = ONNX
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test,browser,tensorboard,distributed,export]'
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[docs,export]'
	touch $@

$(VENV)/.installed-export: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[export]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/localrules run mnist-selfclassify --pretrained --out runs/pretrained

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -rs

# The API reference from the docstrings (mkdocs + mkdocstrings), into runs/site/
# with the static playground built into docs/ first (runs/site/static-playground/; needs npm)
docs: $(VENV)/.installed-docs
	$(BIN)/python scripts/build-playground --out docs/static-playground
	$(BIN)/mkdocs build --strict

# The static playground: the shipped models in the browser, no server (python -m http.server -d runs/playground)
playground: $(VENV)/.installed-export
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
	  [lr.load_restorer(n) for n in ('hybrid', 'ca', 'cnn-ae', 'unet', 'classifier')]; print('every shipped model loads from the wheel')"

clean:
	rm -rf $(VENV) dist build *.egg-info
