# One place for the commands the README names. Every target sets up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODEL  ?= smollm2-135m
PROMPT ?= What is 2 + 3?

.PHONY: setup run chat test pytest lint format typecheck bench clean

$(BIN)/qwq-agent: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,demo,server]"
	@touch $@

setup: $(BIN)/qwq-agent  ## create .venv and install the project with its dev and demo extras

run: setup  ## ask the agent one question (MODEL=qwq-32b for the real thing)
	$(BIN)/qwq-agent ask --model "$(MODEL)" --tools calculator "$(PROMPT)"

chat: setup  ## open the TUI
	$(BIN)/qwq-agent chat --model "$(MODEL)"

test: setup lint typecheck pytest  ## everything CI checks: lint, types, tests

pytest: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: setup
	$(BIN)/mypy

bench: setup  ## the benchmarks of benchmarks/ on the tiny model (MODEL=... to change)
	$(BIN)/python -m benchmarks --model "$(MODEL)"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
