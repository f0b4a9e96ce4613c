# Every target creates the virtual environment and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo sim-demo test netns-tools sweep bench bench-quick bench-election clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# A local cluster under ./quorate-local (one manager bootstraps, the cluster
# provisions two more and two workers), then S1 (kill -9 the leading manager,
# then a worker), S3 (two managers paused) and S2 (two managers killed, with
# and without their data) with a timeline; it keeps running
# (.venv/bin/quorate down).
demo: $(STAMP)
	$(PY) -m quorate demo

# The same failure timeline on the deterministic simulator.
sim-demo: $(STAMP)
	$(PY) -m quorate.sim demo

# The network-namespace tests need ip (iproute2) and nft (nftables); as root
# with apt they are installed here, otherwise those tests skip saying why.
test: $(STAMP) netns-tools
	$(PY) -m pytest -q

netns-tools:
	@if ! command -v nft >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing iproute2 and nftables for the network namespace tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 nftables >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 nftables >/dev/null 2>&1; } || \
	    echo "could not install iproute2/nftables: the network namespace tests will skip"; \
	  fi; \
	fi

# A longer seed sweep than CI runs.
sweep: $(STAMP)
	$(PY) -m quorate.sim --nodes 3 --seeds 0-1999 --faults all
	$(PY) -m quorate.sim --nodes 5 --seeds 0-1999 --faults all
	$(PY) -m quorate.sim --nodes 7 --seeds 0-499 --faults all
	$(PY) -m quorate.sim --nodes 3 --seeds 0-999 --faults all,quorum_loss
	$(PY) -m quorate.sim --nodes 5 --seeds 0-999 --faults all,quorum_loss

# quorate vs etcd vs PySyncObj on this machine (installs etcd-server with apt
# when etcd is missing, PySyncObj from PyPI into .venv); prints a table and
# writes bench/results/<date>-<commit>.json. bench-quick: a short version.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q pysyncobj
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench

bench-quick: $(BENCH_STAMP)
	$(PY) -m bench --quick

bench-election: $(STAMP)
	$(PY) bench/election.py

clean:
	rm -rf $(VENV) .pytest_cache
