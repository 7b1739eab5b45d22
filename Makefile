# The two commands of the README. Each does its own setup first (idempotent).
.PHONY: run test test-truth setup

run:
	bash scripts/setup.sh
	.venv/bin/python app.py

test:
	bash scripts/setup.sh --dev
	.venv/bin/python -m pytest -q -p no:cacheprovider

setup:
	bash scripts/setup.sh --dev

# held-out learning targets (minutes of CPU training each)
test-truth:
	bash scripts/setup.sh --dev
	.venv/bin/python -m pytest -q -p no:cacheprovider -m truth
