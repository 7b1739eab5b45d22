"""GGUF from parts the package registry serves: convert (llama.cpp's convert_hf_to_gguf.py),
quantise (llama.cpp's llama_model_quantize), verify (load in llama.cpp's runtime and
compare greedy tokens with the transformers model).

Where the parts come from: `bash scripts/setup.sh --gguf` (and --dev) builds
llama-cpp-python from its source distribution (it compiles llama.cpp) and keeps the
converter that distribution vendors (vendor/llama.cpp: convert_hf_to_gguf.py, its
conversion/ package and its gguf-py) under ~/.cache/studio. LLAMA_CPP_DIR (a llama.cpp
checkout) overrides the converter.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0", "auto")  # written by the converter itself
QUANT_TYPES = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
               "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K"}  # quantised from an f16 file by llama.cpp
TYPES = CONVERTER_TYPES + tuple(QUANT_TYPES)
# bytes per weight on disk (llama.cpp's block sizes: q8_0 34 B per 32, q6_k 210 per 256, ...)
BYTES_PER_WEIGHT = {"f32": 4, "f16": 2, "bf16": 2, "auto": 2, "q8_0": 34 / 32, "q6_k": 210 / 256,
                    "q5_k_m": 176 / 256, "q4_k_m": 144 / 256}
SETUP_HINT = "run `bash scripts/setup.sh --gguf` (builds llama-cpp-python, a few minutes once; then cached)"


class GGUFError(RuntimeError):
    """A refusal with its reason and the fix."""


def tools_dir() -> Path | None:
    """The folder holding convert_hf_to_gguf.py: LLAMA_CPP_DIR, PATH, else the copy setup.sh kept."""
    root = os.environ.get("LLAMA_CPP_DIR")
    if root and (Path(root) / "convert_hf_to_gguf.py").is_file():
        return Path(root)
    on_path = shutil.which("convert_hf_to_gguf.py")
    if on_path:
        return Path(on_path).resolve().parent
    kept = Path(os.environ.get("STUDIO_GGUF_TOOLS", Path.home() / ".cache" / "studio" / "llama.cpp"))
    return kept if (kept / "convert_hf_to_gguf.py").is_file() else None


def runtime_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama_cpp_python")
    except PackageNotFoundError:
        return None


def status() -> str:
    tools, runtime = tools_dir(), runtime_version()
    if tools and runtime:
        return f"GGUF: converter {tools}, llama.cpp runtime (llama-cpp-python {runtime}): {', '.join(TYPES)}"
    missing = [what for what, ok in (("converter", tools), ("llama-cpp-python", runtime)) if not ok]
    return f"GGUF needs llama.cpp's {' and '.join(missing)}: {SETUP_HINT}, or set LLAMA_CPP_DIR to a llama.cpp checkout."


def check_ready(outtype: str, verify: bool = True) -> None:
    """Refuse, before any work, a type we do not know or the runtime lacks, or missing parts."""
    if outtype not in TYPES:
        raise GGUFError(f"gguf: type '{outtype}' is not one of {', '.join(TYPES)}")
    if tools_dir() is None:
        raise GGUFError(status())
    if outtype in QUANT_TYPES or verify:
        if runtime_version() is None:
            raise GGUFError(status())
    if outtype in QUANT_TYPES:
        import llama_cpp

        if not hasattr(llama_cpp, QUANT_TYPES[outtype]):
            raise GGUFError(f"gguf: this llama.cpp runtime ({runtime_version()}) has no {outtype} quantiser; choose "
                            f"one of {', '.join(t for t in TYPES if t not in QUANT_TYPES or hasattr(llama_cpp, QUANT_TYPES[t]))}")


def _weights_bytes(model_dir: Path) -> tuple[int, int]:
    """(bytes of safetensors weights, bytes per weight in them)."""
    size = sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors"))
    config = json.loads((Path(model_dir) / "config.json").read_text()) if (Path(model_dir) / "config.json").is_file() else {}
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return size, 4 if "32" in dtype else 2


def check_space(model_dir: Path, out_dir: Path, outtype: str) -> int:
    """Estimated bytes of the GGUF; refuses when the disk has not room for it (and the f16
    intermediate of a k-quant)."""
    size, width = _weights_bytes(model_dir)
    need = size / width * (BYTES_PER_WEIGHT[outtype] + (2 if outtype in QUANT_TYPES else 0))
    free = shutil.disk_usage(out_dir).free
    if need * 1.1 + (64 << 20) > free:
        raise GGUFError(f"gguf: not enough space on disk in {out_dir}: the {outtype} file needs ~{need / 2**20:.0f} MiB, "
                        f"{free / 2**20:.0f} MiB free; free some space or export to another folder")
    return int(need)


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """No shell, own process group, the whole group stopped on a timeout."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise GGUFError(f"gguf: the converter ran past {timeout:.0f} s and was stopped") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _temp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def convert(model_dir: str | Path, out_file: str | Path, outtype: str = "f16", timeout: float = 3600) -> Path:
    """A model folder (safetensors + tokenizer) to one .gguf written by llama.cpp's
    converter (to a temporary name, renamed when complete)."""
    if outtype not in CONVERTER_TYPES:
        raise GGUFError(f"gguf: the converter writes {', '.join(CONVERTER_TYPES)}; {outtype} is quantised from f16")
    tools = tools_dir()
    if tools is None:
        raise GGUFError(status())
    out_file = Path(out_file).resolve()
    tmp = _temp_name(out_file)
    # the runner by path: it imports nothing of the studio, so any working directory will do
    cmd = [sys.executable, str(Path(__file__).with_name("_convert.py")), str(tools), str(model_dir), "--outfile", str(tmp),
           "--outtype", outtype]
    try:
        proc = _run(cmd, timeout)
        if proc.returncode != 0 or not tmp.is_file():
            raise GGUFError(_converter_failure(proc.stderr or proc.stdout, model_dir))
        os.replace(tmp, out_file)
    finally:
        tmp.unlink(missing_ok=True)
    return out_file


def _converter_failure(log: str, model_dir) -> str:
    lines = log.strip().splitlines()
    config_file = Path(model_dir) / "config.json"
    archs = json.loads(config_file.read_text()).get("architectures") or [] if config_file.is_file() else []
    # the converter says "Model X is not supported" (or "Architecture 'X' not supported!")
    if any("not supported" in ln and (any(a in ln for a in archs) or "rchitecture" in ln) for ln in lines):
        return (f"gguf: llama.cpp's converter does not support the architecture {', '.join(archs) or '?'}; the "
                "merged safetensors folder still loads in transformers, vLLM and TGI (no GGUF for this model)")
    return "gguf: the converter failed:\n" + "\n".join(lines[-6:])


def quantize(src: str | Path, dst: str | Path, qtype: str) -> Path:
    """An f16/f32 .gguf to a k-quant with llama.cpp's quantiser (through llama-cpp-python)."""
    import ctypes

    import llama_cpp

    check_ready(qtype, verify=False)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[qtype])
    params.nthread = os.cpu_count() or 1
    dst = Path(dst).resolve()
    tmp = _temp_name(dst)
    try:
        code = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if code != 0 or not tmp.is_file():
            raise GGUFError(f"gguf: llama.cpp's quantiser failed on {qtype} (code {code})")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def write(model_dir: str | Path, out_file: str | Path, outtype: str, timeout: float = 3600) -> Path:
    """Convert, and quantise when the type is a k-quant (the f16 step is removed after)."""
    check_ready(outtype, verify=False)
    out_file = Path(out_file).resolve()
    check_space(Path(model_dir), out_file.parent, outtype)
    if outtype not in QUANT_TYPES:
        return convert(model_dir, out_file, outtype, timeout)
    f16 = out_file.with_name(f".{out_file.stem}.f16.{os.getpid()}.gguf")
    try:
        convert(model_dir, f16, "f16", timeout)
        return quantize(f16, out_file, outtype)
    finally:
        f16.unlink(missing_ok=True)


def ship(model_dir: str | Path, outtype: str, out_file: str | Path | None = None, verify: bool = True,
         system: str | None = None, prompts: list[str] | None = None) -> dict:
    """The whole GGUF step of an export: the file, its parity with the transformers model
    (written beside it as <file>.parity.json), and an Ollama Modelfile with the command
    that registers it. Returns what was written, for the CLI and the UI to show."""
    from studio.ship import ollama

    model_dir = Path(model_dir)
    check_ready(outtype, verify)
    out_file = Path(out_file or model_dir / f"model-{outtype}.gguf").resolve()
    made = write(model_dir, out_file, outtype)
    report: dict = {"gguf": str(made), "type": outtype, "bytes": made.stat().st_size}
    if verify:
        from studio.ship.verify import parity

        report["parity"] = parity(model_dir, made, prompts)
        side = made.with_name(made.name + ".parity.json")
        tmp = _temp_name(side)
        tmp.write_text(json.dumps(report["parity"], indent=1))
        os.replace(tmp, side)
    from transformers import AutoTokenizer

    try:
        modelfile, command = ollama.write_modelfile(made, AutoTokenizer.from_pretrained(model_dir), system=system)
        report.update(modelfile=str(modelfile), ollama=command)
    except ollama.TemplateError as exc:  # the GGUF stands on its own; say why there is no Modelfile
        report["modelfile_error"] = str(exc)
    return report


def describe(report: dict) -> list[str]:
    """Lines for the CLI (and the UI) from ship()'s report."""
    lines = [f"gguf ({report['type']}, {report['bytes'] / 2**20:.1f} MiB): {report['gguf']}"]
    p = report.get("parity")
    if p:
        diff = p["first_difference"]
        where = (f"; first difference in prompt {diff['prompt']} at token {diff['position']}: "
                 f"transformers {diff['hf']!r} vs gguf {diff['gguf']!r}") if diff else ""
        lines.append(f"parity: {p['agreement']:.1%} of {p['tokens']} greedy tokens agree over {p['prompts']} prompts "
                     f"(template {p['template_matches']:.0%}, tokenizer {p['tokenizer_matches']:.0%} identical){where}")
    if report.get("modelfile"):
        lines.append(f"ollama Modelfile: {report['modelfile']}\n  {report['ollama']}")
    elif report.get("modelfile_error"):
        lines.append(report["modelfile_error"])
    return lines
