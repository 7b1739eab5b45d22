"""Training Studio: build, train and test language models from a browser or the CLI.

One run: a RunSpec (studio.spec) from a UI tab, a preset or CLI flags is validated,
costed (studio.estimate) and advised on (studio.advisor); studio.jobs writes it to
runs/<id>/ and starts studio.worker, which builds model, data and method and writes
metrics.jsonl, status.json and final/; the UI tails those files and chats with final/.
"""
