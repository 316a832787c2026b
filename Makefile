# Two commands on a fresh machine (see README):
#   make run    set everything up, then run the main job (TiDAL vs baselines on real FashionMNIST)
#   make test   set everything up, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
RUN_DIR ?= runs/fashion-mnist-quick
FMNIST_DIR := /usr/share/datasets/fashion-mnist
# A local wheel folder (this machine keeps the CPU torch wheel there), when present.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

# Label Studio (for the slow round-trip test) in a venv of its own: it pins Django and many
# other packages. A failed install (offline) is a note, and that one test skips saying why.
LS_VENV ?= .venv-labelstudio
LABEL_STUDIO ?= label-studio==1.23.2

.PHONY: run test setup data browser clean labelstudio

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The CPU build of torch first, pinned, so the dependency below installs nothing more.
	$(PY) -m pip install --quiet $(FIND_LINKS) "$(TORCH)"
	# [ray]: the Ray backend's tests run in CI too (ray installs beside torch without changing it or numpy).
	$(PY) -m pip install --quiet $(FIND_LINKS) -e ".[report,test,ray]"
	touch $@

setup: $(VENV)/.installed data

$(LS_VENV)/.installed:
	@rm -rf $(LS_VENV)
	@$(PYTHON) -m venv $(LS_VENV) && $(LS_VENV)/bin/python -m pip install --quiet "$(LABEL_STUDIO)" && touch $@ \
		|| { rm -rf $(LS_VENV); echo "note: could not install $(LABEL_STUDIO) into $(LS_VENV); its round-trip test will skip"; }

labelstudio: $(LS_VENV)/.installed

# Official FashionMNIST IDX files from the Debian package when we can install it;
# otherwise tidal looks in $$TIDAL_DATA / ~/.cache/tidal and downloads when online.
data:
	@if [ -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null)) \
		|| echo "note: could not install dataset-fashion-mnist; tidal will look elsewhere or download"; \
	else echo "note: run 'sudo apt-get install dataset-fashion-mnist' or set TIDAL_DATA; tidal will try to download"; fi

# A headless browser for the test that opens `tidal report PROJECT`'s page (Debian's chromium)
# when we can install it; without one that test is skipped and says why.
browser:
	@if command -v chromium >/dev/null || [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -qq chromium >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null)) \
		|| echo "note: could not install chromium; the report's browser test will be skipped"; \
	else echo "note: run 'sudo apt-get install chromium' to run the report's browser test"; fi

run: setup
	$(VENV)/bin/tidal run --preset quick --dataset fashion-mnist --imbalance 1 \
		--methods tidal-entropy random entropy margin --seeds 0 --jobs 2 --out $(RUN_DIR)

test: setup labelstudio browser
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(LS_VENV) runs .pytest_cache
