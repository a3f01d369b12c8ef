# Everything bootstraps itself from a plain Python 3.11+: `make up` and `make test` are enough.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test install gen lint typecheck check bench bench-companies bench-segments bench-forms bench-imports bench-scoring bench-triggers bench-enrichment bench-scaleout bench-soak clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Stubs are committed; the gateway descriptor set is a build product.
gen: $(STAMP)
	$(BIN)/python tools/codegen.py

gateway/build/descriptor.binpb: $(STAMP) $(wildcard proto/tnx/*/v1/*.proto)
	$(BIN)/python tools/codegen.py --descriptor-only

up: $(STAMP) gateway/build/descriptor.binpb
	$(BIN)/tnx-crm up

test: $(STAMP) gateway/build/descriptor.binpb
	$(BIN)/python -m pytest tests -q

lint: $(STAMP)
	$(BIN)/ruff check server tests bench tools
	$(BIN)/ruff format --check server tests bench tools

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP) gateway/build/descriptor.binpb
	$(BIN)/python -m bench.leads

# Company tree and group-filter ratios (bench/companies.py).
bench-companies: $(STAMP) gateway/build/descriptor.binpb
	$(BIN)/python -m bench.companies

# Rule-segment upkeep, 10k-lead batch refresh and export through Envoy (bench/segments.py).
bench-segments: $(STAMP) gateway/build/descriptor.binpb
	$(BIN)/python -m bench.segments

# Public form submissions/s through Envoy, rate limits off (bench/forms.py).
bench-forms: $(STAMP) gateway/build/descriptor.binpb
	$(BIN)/python -m bench.forms

# Bulk import end to end against COPY + INSERT … ON CONFLICT, worker RSS, upload MB/s.
bench-imports: $(STAMP) gateway/build/descriptor.binpb
	$(BIN)/python -m bench.imports

# StreamActivities against COPY, CreateActivity against CreateLead, rebuild and decay against
# one UPDATE of the same leads (bench/scoring.py). No Envoy: no descriptor set needed.
bench-scoring: $(STAMP)
	$(BIN)/python -m bench.scoring

bench-triggers: $(STAMP)
	$(BIN)/python -m bench.triggers

# BatchEnrich of 10,000 leads against a local fake provider (50 ms) through two workers, against
# the connector's rate limit and a bare client; then the cache's share (bench/enrichment.py).
bench-enrichment: $(STAMP)
	$(BIN)/python -m bench.enrichment

# tnx-crm up --servers 2 --workers 2 against 1 + 1 on the machine's PostgreSQL and Redis: calls/s
# and import rows/s through Envoy, then a server killed under load (bench/scaleout.py).
bench-scaleout: $(STAMP) gateway/build/descriptor.binpb
	$(BIN)/python -m bench.scaleout

# The REST mix's maximum, 60 s at 80% of it, then a 10-minute soak with an import running
# (bench/soak.py).
bench-soak: $(STAMP) gateway/build/descriptor.binpb
	$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) build gateway/build

# Contract checks. buf is the npm package @bufbuild/buf pinned in package-lock.json and
# installed into node_modules/ on first use (npm ci); outside CI these skip with a printed
# reason when npm is missing, under CI=true that is a failure. See tools/buf_check.sh.
.PHONY: lint-proto breaking check-generated

lint-proto: $(STAMP)
	bash tools/buf_check.sh lint

breaking: $(STAMP)
	bash tools/buf_check.sh breaking

# Regenerates clients/python with tools/codegen.py and fails on any diff or untracked file,
# then checks that `buf generate` (buf.gen.yaml) gives the same files, and that the TypeScript
# client's src/gen matches proto/.
check-generated: $(STAMP)
	bash tools/check_generated.sh

# The TypeScript client's committed generated code (clients/typescript/src/gen): buf and
# protoc-gen-es from npm (node/npm needed). tools/codegen.py (`make gen`) is the Python side.
.PHONY: gen-ts
gen-ts: $(STAMP)
	bash clients/typescript/generate.sh
