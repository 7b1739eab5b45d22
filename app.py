"""Training Studio: `python app.py` (also the Hugging Face Spaces entry point).

Flags or environment: --host/GRADIO_SERVER_NAME, --port/GRADIO_SERVER_PORT, --share,
--demo/STUDIO_DEMO (chat only), --demo-model/STUDIO_DEMO_MODELS, --runs-dir/STUDIO_RUNS_DIR,
--auth-file/STUDIO_AUTH_FILE or STUDIO_USERNAME + STUDIO_PASSWORD, --trust-remote-code,
--data-root DIR/STUDIO_DATA_ROOTS (hosted mode: more folders data may be read from).
"""
import sys

from studio.serve import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
