"""Save the form as a YAML spec and load one back (a file, or a previous run's spec), so
a setup is never typed twice. Loading fills every tab's fields; nothing starts."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import gradio as gr

from studio import jobs
from studio.spec import RunSpec, SpecError
from studio.ui import form
from studio.ui.train_view import run_choices

PRIVATE = dict(api_visibility="private")


def build(runs_dir) -> dict:
    w: dict = {}
    with gr.Accordion("Save or load a spec (YAML)", open=False, elem_id="spec-io"):
        with gr.Row(equal_height=True):
            w["save"] = gr.Button("Save the form as YAML", elem_id="spec-save", size="sm")
            w["upload"] = gr.UploadButton("Load a YAML file", file_types=[".yaml", ".yml"], elem_id="spec-upload",
                                          size="sm")
        with gr.Row(equal_height=True):
            w["run"] = gr.Dropdown(choices=run_choices(runs_dir), value=None, label="or a previous run's spec",
                                   elem_id="spec-run", scale=3)
            w["load_run"] = gr.Button("Load its spec", elem_id="spec-load-run", size="sm", scale=1)
        w["file"] = gr.File(label="spec.yaml", elem_id="spec-file", interactive=False, visible=False)
        w["message"] = gr.Markdown("", elem_id="spec-io-message")
    return w


def saved_spec(paths: list[str], values) -> Path:
    spec = form.spec_from_values(paths, values)
    out = Path(tempfile.gettempdir()) / "studio-specs" / f"{int(time.time() * 1000)}"
    out.mkdir(parents=True, exist_ok=True)
    spec.save(out / f"{spec.name or 'spec'}.yaml")
    return out / f"{spec.name or 'spec'}.yaml"


def loaded_spec(path: Path) -> RunSpec:
    """The spec in `path` as a new run's: a run's resume point stays with that run."""
    spec = RunSpec.load(path)
    spec.train.resume_from = ""
    return spec


def wire(fields: dict, w: dict, settings) -> None:
    paths, comps = list(fields), list(fields.values())

    def on_save(*values):
        try:
            return gr.update(value=str(saved_spec(paths, values)), visible=True), "Saved: download it above."
        except SpecError as exc:
            raise gr.Error(f"{exc.field}: {exc.fix}") from None

    w["save"].click(on_save, comps, [w["file"], w["message"]], **PRIVATE)

    def fill(path: Path, where: str):
        try:
            spec = loaded_spec(path)
        except SpecError as exc:
            raise gr.Error(f"{where}: `{exc.field}`: {exc.fix}") from None
        except (OSError, ValueError) as exc:
            raise gr.Error(f"{where} cannot be read as a spec: {exc}") from None
        return (*form.updates_for(spec, paths), f"Loaded {where} into every tab. Check it, then press Start.")

    def on_upload(file):
        if not file:
            raise gr.Error("Choose a .yaml file.")
        path = Path(file if isinstance(file, str) else getattr(file, "name", str(file)))
        return fill(path, f"`{path.name}`")

    def on_run(rid):
        if not rid:
            raise gr.Error("Pick a run whose spec to load.")
        try:
            run_dir = jobs.run_path(rid, settings.runs_dir)
        except jobs.JobError as exc:
            raise gr.Error(str(exc)) from None
        return fill(run_dir / "spec.yaml", f"run {rid}'s spec")

    w["upload"].upload(on_upload, w["upload"], comps + [w["message"]], **PRIVATE)
    w["load_run"].click(on_run, w["run"], comps + [w["message"]], **PRIVATE)
    w["run"].focus(lambda: gr.update(choices=run_choices(settings.runs_dir)), None, w["run"], **PRIVATE)
