# Portcullis — build, lab, demo and tests. `make demo` and `make test` are the two set-up commands;
# both install what they need (Debian packages as root, a pinned Python venv) on a fresh Debian 12.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
COLLECTIONS := $(abspath build/collections)
INSTALLED := $(COLLECTIONS)/ansible_collections/portcullis/hardening
TARBALL = build/portcullis-hardening-$(shell sed -n 's/^version: *//p' galaxy.yml).tar.gz
SANITY_PYTHON ?= 3.11
REPORT_DIR ?= $(abspath reports)

# The demo's lab and the tests' lab are separate, so `make test` never disturbs a demo you are looking at.
LAB := $(BIN)/python $(abspath lab/portcullis_lab.py)
DEMO_LAB_DIR ?= $(abspath .lab)
TEST_LAB_DIR ?= $(abspath .lab-test)
# `make demo` moves the lab hosts' sshd here.
DEMO_SSH_PORT ?= 2222

APT_PACKAGES := podman runc debootstrap shellcheck chromium poppler-utils
# The official SARIF 2.1.0 schema (assets/sarif-2.1.0.schema.json), for the report tests; npm has it, PyPI does not.
SARIF_SCHEMA_PACKAGE := @microsoft/sarif-multitool-ts@5.7.0
SARIF_SCHEMA := $(VENV)/node_modules/@microsoft/sarif-multitool-ts/assets/sarif-2.1.0.schema.json
export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export PORTCULLIS_LAB := $(abspath lab/portcullis_lab.py)
export PORTCULLIS_LAB_PYTHON := $(BIN)/python
export ANSIBLE_CALLBACK_RESULT_FORMAT := yaml
export ANSIBLE_FORCE_COLOR ?= $(if $(CI),0,1)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help deps venv sarif-schema collection demo test sanity units lint changelog-lint security-lint integration molecule \
        lab lab-down test-lab-down molecule-down clean bench bench-report

help:
	@echo "make demo   fresh lab (Debian 12 + 13 hosts over SSH): discover, audit, harden, audit again, show the report"
	@echo "make test   changelog lint, ansible-lint, ansible-test sanity, unit, integration and Molecule tests"
	@echo "make bench  benchmarks (discovery at scale, profile, fleet) into bench/results/; make bench-report: plots and docs"
	@echo "make lab | lab-down | sanity | units | lint | integration | molecule | clean"

# --- set-up -------------------------------------------------------------------------------------

deps:
	@missing=""; for pkg in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$pkg"; \
	done; \
	$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "Run as root (or install:$$missing)" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	    || { echo "apt-get install$$missing failed: install them by hand and retry" >&2; exit 1; }; \
	fi

venv: $(VENV)/.installed
$(VENV)/.installed: requirements/controller.txt | deps
	@echo "Creating the Python venv in $(VENV) (pinned in requirements/controller.txt)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -r requirements/controller.txt
	touch $@

sarif-schema: $(SARIF_SCHEMA)
$(SARIF_SCHEMA): | venv
	npm install --prefix $(VENV) --no-save --no-audit --no-fund --ignore-scripts --loglevel=error \
	  $(SARIF_SCHEMA_PACKAGE)
	test -s $@

# Build the tarball and install it as ansible-test and users see it: ansible_collections/portcullis/hardening.
# The installed tree gets its own git index so that ansible-test (which lists files with git) sees its files.
collection: venv
	rm -rf build
	$(BIN)/ansible-galaxy collection build --output-path build/ . >/dev/null
	$(BIN)/ansible-galaxy collection install --force -p $(COLLECTIONS) $(TARBALL) >/dev/null
	cp .gitignore $(INSTALLED)/.gitignore
	cd $(INSTALLED) && git init -q && git add -A
	@echo "Installed $(TARBALL) into $(COLLECTIONS)"

# --- the lab and the demo ----------------------------------------------------------------------

lab: venv
	$(LAB) --state-dir $(DEMO_LAB_DIR) up

lab-down:
	@if [ -x $(BIN)/python ]; then $(LAB) --state-dir $(DEMO_LAB_DIR) down; fi

# The demo starts from fresh lab hosts every time, so "before" is always the untouched lab.
demo: collection
	$(LAB) --state-dir $(DEMO_LAB_DIR) down >/dev/null
	$(LAB) --state-dir $(DEMO_LAB_DIR) up
	@echo "== 1. Discover: what listens on each lab host (playbooks/discover.yml)"
	$(BIN)/ansible-playbook -i $(DEMO_LAB_DIR)/inventory.yml playbooks/discover.yml \
	  -e portcullis_report_dir=$(REPORT_DIR) -e portcullis_show_table=false
	@echo "== 2. Audit against demo/lab-allowlist.yml, in check mode (playbooks/audit.yml --check)"
	$(BIN)/ansible-playbook -i $(DEMO_LAB_DIR)/inventory.yml playbooks/audit.yml --check \
	  -e @demo/lab-allowlist.yml -e portcullis_report_dir=$(REPORT_DIR)/before -e portcullis_fail_on_findings=false
	@echo "== 3. Harden: move SSH 22 -> $(DEMO_SSH_PORT) over the moved connection, a default-deny firewall from the"
	@echo "   same allowlist, stop the units that listen without an entry, then verify from inside and from here"
	@echo "   (playbooks/harden.yml -e portcullis_ssh_port=$(DEMO_SSH_PORT) -e portcullis_stop_unlisted=true)"
	$(BIN)/ansible-playbook -i $(DEMO_LAB_DIR)/inventory.yml playbooks/harden.yml -e @demo/lab-allowlist.yml \
	  -e portcullis_ssh_port=$(DEMO_SSH_PORT) -e portcullis_stop_unlisted=true -e portcullis_report_dir=$(REPORT_DIR)/harden
	@echo "== 4. Audit again (the lab's inventory still says 22: the role finds sshd on $(DEMO_SSH_PORT))"
	$(BIN)/ansible-playbook -i $(DEMO_LAB_DIR)/inventory.yml playbooks/audit.yml --check \
	  -e @demo/lab-allowlist.yml -e portcullis_ssh_port=$(DEMO_SSH_PORT) -e portcullis_report_dir=$(REPORT_DIR)/after \
	  -e portcullis_previous_report=$(REPORT_DIR)/before/portcullis-report.json
	@echo
	@echo "== What listens"
	@cat $(REPORT_DIR)/listeners.txt
	@echo
	@echo "== Audit before hardening"
	@cat $(REPORT_DIR)/before/portcullis-report.txt
	@echo
	@echo "== Audit after hardening (what was resolved since the audit before is listed first)"
	@cat $(REPORT_DIR)/after/portcullis-report.txt
	@echo
	@echo "Reports: $(REPORT_DIR)/{before,harden,after}/portcullis-report.{html,json,junit.xml,sarif,txt}"
	@echo "Log in to a lab host: ssh -F $(DEMO_LAB_DIR)/ssh_config -p $(DEMO_SSH_PORT) portcullis-bookworm-1"

# --- tests -------------------------------------------------------------------------------------

test: changelog-lint lint security-lint sanity units integration molecule
	@echo "make test: all suites passed"

changelog-lint: venv
	$(BIN)/antsibull-changelog lint

lint: venv
	@# ansible-lint installs the collection under test into the first collections path: keep it in ./.ansible
	env -u ANSIBLE_COLLECTIONS_PATH $(BIN)/ansible-lint --profile production

# The bandit rules (S) and a few correctness rules over the plugins and the lab; see ruff.toml.
security-lint: venv
	$(BIN)/ruff check --no-cache plugins lab

# ansible-test downloads a get-pip.py for each sanity venv from a host that is unreachable here;
# put the project's stand-in at the cache path it reads first.
sanity: collection
	pip_version=$$(sed -n "s/.*pip='\([0-9.]*\)'.*/\1/p" $$($(BIN)/python -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py); \
	  test -n "$$pip_version"; mkdir -p ~/.ansible/test/cache; \
	  cp tools/get_pip_standin.py ~/.ansible/test/cache/get_pip_$${pip_version//./_}.py
	cd $(INSTALLED) && $(BIN)/ansible-test sanity --venv --python $(SANITY_PYTHON) --color no

units: collection sarif-schema
	cd $(INSTALLED) && PYTEST=$(BIN)/pytest PYTHONPATH=$(COLLECTIONS) $(abspath tools/run-pytest) \
	  -p no:cacheprovider tests/unit
	@# The benchmarks' pure parts, and docs/performance.md against bench/results/ (bench/ is not in the tarball).
	cd bench && PYTEST=$(BIN)/pytest $(abspath tools/run-pytest) -p no:cacheprovider tests

integration: collection
	$(LAB) --state-dir $(TEST_LAB_DIR) up
	cd $(INSTALLED) && PORTCULLIS_LAB_DIR=$(TEST_LAB_DIR) PORTCULLIS_TARBALL=$(abspath $(TARBALL)) \
	  PYTEST=$(BIN)/pytest PYTHONPATH=$(COLLECTIONS) $(abspath tools/run-pytest) -p no:cacheprovider tests/integration

molecule: collection
	cd $(INSTALLED)/extensions && PATH=$(BIN):$$PATH $(BIN)/molecule --base-config molecule/config.yml test --all

test-lab-down:
	@if [ -x $(BIN)/python ]; then $(LAB) --state-dir $(TEST_LAB_DIR) down; fi

# Remove the hosts of an interrupted Molecule run (each scenario's destroy removes them by container id).
molecule-down:
	@if [ -d $(INSTALLED)/extensions ]; then cd $(INSTALLED)/extensions && $(BIN)/molecule --base-config molecule/config.yml destroy --all; fi

# --- benchmarks (docs/performance.md): ratios measured side by side in one run, never timed tests ---------------

# The commit before the listening_ports speed-up: the profile's "before".
BENCH_BEFORE_REF ?= 563d0bc
BENCH_LAB_DIR ?= $(abspath .lab-bench)
BENCH_LARGE_FLEET ?= 50

bench: collection
	$(BIN)/python bench/discovery.py --collections-path $(COLLECTIONS)
	$(BIN)/python bench/profile_discovery.py --ref $(BENCH_BEFORE_REF) --label before
	$(BIN)/python bench/profile_discovery.py --ref HEAD --label after
	$(BIN)/python bench/fleet.py --collections-path $(COLLECTIONS) --lab-dir $(BENCH_LAB_DIR)
	@# One large audit: 50 containers need about 200 inotify instances (fs.inotify.max_user_instances, often 128);
	@# fleet.py runs the largest fleet that fits and says so.
	$(BIN)/python bench/fleet.py --audit-only --sizes $(BENCH_LARGE_FLEET) --collections-path $(COLLECTIONS) \
	  --lab-dir $(BENCH_LAB_DIR)
	@echo "Results in bench/results/; make bench-report draws the plots and updates docs/performance.md"

bench-report: venv
	$(BIN)/pip install -q --disable-pip-version-check -r requirements/bench.txt
	$(BIN)/python bench/report.py

clean: lab-down test-lab-down molecule-down
	rm -rf build reports
