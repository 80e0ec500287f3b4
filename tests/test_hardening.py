"""Issue 10's cases, one regression test each, at the command line: failures are one line
with exit code 2, output paths are checked before any work, huge grids are refused, the
statistics do not mislead, tables read at 80 columns and in files, help follows one style."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from dsi_online.cli import main
from dsi_online.reports.heatmap_view import SPEEDUP_BANDS, band_of, render_grid
from dsi_online.sim.profile import SHIPPED_DIR
from dsi_online.sim.stats import Speedup

VIRTUAL = ["run", "--clock", "virtual"]
SMALL_HEATMAP = ["heatmap", "--ndim", "2", "--max-lookahead", "2", "-S", "20", "-r", "1"]
SMALL_HEATMAP += ["--workers", "1", "--no-png"]


def one_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """Run the CLI, which must fail with exit code 2 and one `error:` line, the last on
    stderr (the size of the work may come before it); that line."""
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], captured.err
    assert "Traceback" not in captured.err and "('" not in errors[0]  # no Python tuples
    return errors[0]


# --- tracebacks that became one line ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--target-ms", "1e-7"], "--target-ms"),  # rounded to 0 ns: ZeroDivisionError
        (["--drafter-ms", "1e-9"], "--drafter-ms"),
        (["--target-ms", "1e300"], "--target-ms"),
        (["--latency-cv", "1e300"], "--latency-cv"),  # OverflowError
        (["-S", "99999999999999999999"], "--tokens"),
        (["-r", "99999999999999999999"], "--repeats"),  # MemoryError after GBs
        (["-n", "99999999999999999999"], "--servers"),
        (["-k", "99999999999999999999"], "--lookahead"),
        (["--comm-ms", "1e-9"], "--comm-ms"),
        (["--json", ""], "--json"),
        (["--clock", "sundial"], "--clock"),
        (["--engine", "warp"], "--engine"),
    ],
)
def test_run_bad_input_is_one_line(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert needle in one_error(capsys, [*VIRTUAL, *args])


def test_json_to_a_full_stdout_is_one_line(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "dsi_online", *VIRTUAL, "-S", "20", "--json", "-"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == "error: cannot write to stdout: No space left on device"
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def test_unreadable_load_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "heatmap.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert "UTF-8" in one_error(capsys, ["heatmap", "--load", str(binary), "--no-png"])


@pytest.mark.parametrize("settings", ["run.json", "sweep.json"])
def test_resume_of_a_damaged_folder_is_one_line(
    settings: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / settings).write_text("{not json", encoding="utf-8")
    command = "heatmap" if settings == "run.json" else "sweep"
    assert "damaged" in one_error(capsys, [command, "--resume", "--out", str(folder), "--no-png"])


def test_resume_of_a_folder_that_cannot_be_written_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As root, permissions bind only a process that dropped its privileges: a forked child
    becomes `nobody` (pytest's folders are private, so this one lives in a public one)."""
    base = Path(tempfile.mkdtemp())
    base.chmod(0o755)
    out = base / "out"
    assert main([*SMALL_HEATMAP, "--out", str(out)]) == 0
    (out / "heatmap.csv").unlink()
    (out / "run.json").chmod(0o644)
    out.chmod(0o555)
    main(["heatmap", "--ndim", "0"])  # import what parsing needs before dropping privileges
    capsys.readouterr()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.close(read)
        sys.stderr = os.fdopen(write, "w")
        if os.getuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        code = main(["heatmap", "--resume", "--out", str(out), "--no-png"])
        sys.stderr.flush()
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as child_err:
        err = child_err.read()
    _, status = os.waitpid(pid, 0)
    out.chmod(0o755)
    shutil.rmtree(base)
    assert os.waitstatus_to_exitcode(status) == 2, err
    assert err.startswith("error: ") and "cannot be resumed" in err and err.count("\n") == 1


def test_ray_address_nothing_listening_is_one_line_fast(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    args = [*SMALL_HEATMAP, "--backend", "ray", "--ray-address", f"127.0.0.1:{port}"]
    assert "no Ray cluster answers" in one_error(capsys, args)
    assert time.monotonic() - start < 10


@pytest.mark.parametrize(
    ("address", "needle"),
    [("nonsense", "HOST:PORT"), ("ray://127.0.0.1:10001", "ray[client]"), ("h:99999", "HOST")],
)
def test_bad_ray_addresses_are_one_line(
    address: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if address.startswith("ray://"):
        pytest.importorskip("ray")
        try:
            import grpc  # noqa: F401
        except ImportError:
            pass
        else:
            pytest.skip("ray[client] is installed: ray:// addresses are allowed")
    args = [*SMALL_HEATMAP, "--backend", "ray", "--ray-address", address]
    assert needle in one_error(capsys, args)


def test_missing_checkpoint_directory_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    args = ["measure", "latency", "--target", "/nonexistent/checkpoint", "--device", "cpu"]
    assert "no such directory" in one_error(capsys, args)


# --- output paths checked before any work --------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [*VIRTUAL, "-S", "20"],
        ["bench", "--quick"],
        ["profiles"],
        ["sweep", "--vary", "servers=1:2", "-S", "10", "-r", "2", "--no-png"],
        ["table", "tiny-llama-cpu", "-a", "0.8"],
        ["measure", "latency", "--target", "tiny-llama", "--device", "cpu"],
    ],
)
@pytest.mark.parametrize("where", ["/nonexistent/d/x.json", "/proc/x.json", "FOLDER"])
def test_json_path_is_checked_before_the_work(
    args: list[str], where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = str(tmp_path) if where == "FOLDER" else where
    out = ["--out", str(tmp_path / "out")] if args[0] == "sweep" else []
    start = time.monotonic()
    line = one_error(capsys, [*args, *out, "--json", target])
    assert "--json" in line
    assert time.monotonic() - start < 5  # nothing ran (bench alone takes about 10 s)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".*tmp"))  # no stray temporary file


@pytest.mark.parametrize("where", ["/nonexistent/d/x.toml", "/proc/x.toml"])
def test_measure_out_is_checked_before_measuring(
    where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["measure", "latency", "--target", "tiny-llama", "--drafter", "tiny-llama-drafter"]
    assert "--out" in one_error(capsys, [*args, "--out", where, "--device", "cpu"])


def test_json_writes_through_symlinks_and_devices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "real.json"
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert main([*VIRTUAL, "-S", "10", "-r", "1", "--json", str(link)]) == 0
    assert link.is_symlink() and json.loads(target.read_text())["lossless"] is True
    assert main([*VIRTUAL, "-S", "10", "-r", "1", "--json", "/dev/null"]) == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)  # still the device, not a file
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    assert main([*VIRTUAL, "-S", "10", "-r", "1", "--json", str(fifo)]) == 0
    reader.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and json.loads(received[0])["lossless"]
    assert not list(tmp_path.glob(".*tmp"))
    capsys.readouterr()


# --- bounds on work ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["heatmap", "--ndim", "100000"], "[2, 200]"),
        (["heatmap", "--max-lookahead", "100000"], "[1, 100]"),
        (["heatmap", "--ndim", "200", "--max-lookahead", "100"], "at most 1,000,000"),
        (["table", "--max-lookahead", "100000"], "[1, 100]"),
        (["sweep", "--vary", "servers=1:100000"], "at most 10,000"),
        (["sweep", "--vary", "servers=1:2000000"], "[1, 1000000]"),
        (["sweep", "--vary", "servers=1:9999", "--vary", "lookahead=1:9"], "at most 10,000"),
        (["sweep", "--vary", "acceptance=0:1:99999999999"], "[2, 10000]"),
    ],
)
def test_huge_grids_are_refused_in_one_line(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    start = time.monotonic()
    assert needle in one_error(capsys, args)
    assert time.monotonic() - start < 5


def test_work_size_is_announced_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMALL_HEATMAP, "--out", str(tmp_path / "h")]) == 0
    assert capsys.readouterr().err.startswith("heatmap: 12 (c, a, k) cells")
    args = ["sweep", "--vary", "servers=1:2", "-S", "10", "-r", "2", "--no-png"]
    assert main([*args, "--out", str(tmp_path / "s")]) == 0
    assert capsys.readouterr().err.startswith("sweep: 2 cells x 2 repeats x 10 tokens")


def test_presets_that_cannot_fit_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    monkeypatch.setattr(
        "dsi_online.measure.torch_runtime.available_memory", lambda device: 16 * 10**9
    )
    args = ["measure", "latency", "--target", "vicuna-13b", "--device", "cpu"]
    line = one_error(capsys, args)
    assert "vicuna-13b" in line and "float32" in line and "--dtype" in line and "GPU" in line


# --- statistics ------------------------------------------------------------------------------


def test_speedup_intervals_are_positive_for_skewed_latencies(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([*VIRTUAL, "--latency-cv", "100", "-r", "3", "--json", "-"]) == 0
    document = json.loads(capsys.readouterr().out)
    for interval in document["speedups_ci95"].values():
        assert 0 < interval["ci95_low"] < interval["value"] < interval["ci95_high"]
    assert "inconclusive" in document["verdict"] or all(
        i["ci95_low"] > 1 or i["ci95_high"] < 1 for i in document["speedups_ci95"].values()
    )


def test_an_interval_spanning_one_is_inconclusive() -> None:
    spans = Speedup.paired([1.0, 1.2, 0.9, 1.1], [1.05, 1.1, 0.95, 1.0])
    assert spans.ci_low is not None and spans.ci_low < 1 < (spans.ci_high or 0)
    assert not spans.conclusive
    from dsi_online.reports.run import compare

    assert compare(spans, "SI").startswith("inconclusive against SI")
    assert compare(Speedup.paired([2.0, 2.1, 1.9], [1.0, 1.0, 1.0]), "SI").startswith("2x")


def test_too_few_repeats_never_say_enough_servers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["sweep", "--vary", "servers=1:4", "-S", "30", "-r", "2", "--no-png", "--json", "-"]
    assert main([*args, "--out", str(tmp_path / "s")]) == 0
    captured = capsys.readouterr()
    (knee,) = json.loads(captured.out)["knees"]
    assert knee["conclusive"] is False and "inconclusive" in knee["sentence"]
    assert "are enough" not in captured.err


def test_busy_and_reserved_gpu_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*VIRTUAL, "-S", "50", "-r", "2", "-n", "4", "--json", "-"]) == 0
    document = json.loads(capsys.readouterr().out)
    for name, gpus in (("nonsi", 1), ("si", 2), ("dsi", 5)):
        algo = document["algorithms"][name]
        assert algo["gpus"] == gpus
        assert algo["reserved_s"] == pytest.approx([lat * gpus for lat in algo["latency_s"]])
        assert all(b <= r + 1e-9 for b, r in zip(algo["busy_s"], algo["reserved_s"], strict=True))
    assert "reserved GPU-seconds" in document["verdict"] and "busy" in document["verdict"]


@pytest.mark.parametrize(
    ("args", "present", "absent"),
    [
        ([], "cancelled forward frees its server at once", "racing"),
        (["--latency-cv", "0.5"], "racing on independent draws", "slower than non-SI"),
        (["--comm-ms", "1"], "DSI can be slower than non-SI", "racing"),
    ],
)
def test_the_verdict_states_the_assumptions_that_flatter_dsi(
    args: list[str], present: str, absent: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*VIRTUAL, "-S", "30", "-r", "2", *args, "--json", "-"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert present in document["verdict"] and absent not in document["verdict"]
    assert len(document["assumptions"]) == 4


def test_acceptance_refuses_different_vocabularies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    from dsi_online.measure.presets import PRESETS

    preset = PRESETS["tiny-llama-drafter"]
    config = transformers.AutoConfig.for_model(
        preset.model_type, **(preset.config_kwargs() | {"vocab_size": 1000})
    )
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "small")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\n", encoding="utf-8")
    args = ["measure", "acceptance", "--target", "tiny-llama", "--drafter", str(tmp_path / "small")]
    line = one_error(capsys, [*args, "--prompts", str(prompts), "--device", "cpu"])
    assert "1000" in line and "2048" in line and "tokenizer" in line


def test_profiles_resolve_by_the_name_they_are_listed_under(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DSI_ONLINE_PROFILES", str(tmp_path))
    text = (SHIPPED_DIR / "tiny-llama-cpu.toml").read_text(encoding="utf-8")
    (tmp_path / "file-stem.toml").write_text(
        text.replace('name = "tiny-llama-cpu"', 'name = "listed-name"'), encoding="utf-8"
    )
    (tmp_path / "broken.toml").write_text("not toml [", encoding="utf-8")
    assert main(["profiles", "--json", "-"]) == 0
    names = [entry["name"] for entry in json.loads(capsys.readouterr().out)]
    assert "listed-name" in names
    assert main([*VIRTUAL, "--profile", "listed-name", "-a", "0.8", "-S", "10", "-r", "1"]) == 0
    capsys.readouterr()
    line = one_error(capsys, [*VIRTUAL, "--profile", "no-such-profile"])
    assert "listed-name" in line and "broken" not in line


# --- 80 columns and redirected output ------------------------------------------------------


def _render(renderable: Any, width: int) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=True, color_system=None).print(renderable)
    return buffer.getvalue()


def test_tables_at_80_columns_cut_no_number() -> None:
    from dsi_online.cli.table import load_profiles, render_table
    from dsi_online.reports.run import render_table as render_run
    from dsi_online.sim.runner import run_scenario
    from dsi_online.sim.scenario import Scenario
    from dsi_online.studies.table import TableConfig, build_table

    config = TableConfig(acceptance=0.8, tokens=30, repeats=3, max_lookahead=3)
    rows = build_table(load_profiles(["tiny-llama-cpu"]), config)
    scenario = Scenario.from_ms(
        target_ms=30, drafter_ms=3, acceptance=0.8, lookahead=5, servers=7, tokens=50, repeats=3
    )
    for renderable in (render_table(rows, config), render_run(run_scenario(scenario))):
        text = _render(renderable, 80)
        assert "…" not in text
        assert max(len(line) for line in text.splitlines()) <= 80
    text = _render(render_table(rows, config), 80)
    assert text.count("tiny-llama-cpu") == 2  # whole in both tables' profile column


def test_redirected_output_has_no_width_limit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["table", "tiny-llama-cpu", "-a", "0.8", "-S", "20", "-r", "2"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and "tiny-llama (architecture preset, random weights)" in out
    assert main([*VIRTUAL, "-S", "20"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and "latency s" in out and "reserved GPU-s" in out
    assert main(["profiles"]) == 0
    assert "…" not in capsys.readouterr().out


def test_heatmap_cells_have_gaps() -> None:
    from dsi_online.studies.heatmap_rows import PanelGrid

    grid = PanelGrid([0.1, 0.2, 0.3], [0.5, 0.9], [[1.0, 1.0, 1.0], [1.24, 2.5, 0.8]])
    text = _render(render_grid(grid, "t", SPEEDUP_BANDS, False), 80)
    assert re.search(r"\d\.\d\d\.\d", text) is None and "1.0 1.0 1.0" in text


def test_colour_bands_separate_no_gain_from_24_percent() -> None:
    assert band_of(1.0, SPEEDUP_BANDS) != band_of(1.24, SPEEDUP_BANDS)
    assert band_of(0.99, SPEEDUP_BANDS) != band_of(1.0, SPEEDUP_BANDS)


def test_plot_extra_hint_keeps_its_brackets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("dsi_online.reports.plots.matplotlib_available", lambda: False)
    args = [a for a in SMALL_HEATMAP if a != "--no-png"]
    assert main([*args, "--out", str(tmp_path / "h")]) == 0
    assert "pip install 'dsi-online[plot]'" in capsys.readouterr().err


def test_png_axes_span_the_grid_and_sweep_ticks_are_integers(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from dsi_online.reports.plots import _span_grid, pyplot
    from dsi_online.studies.heatmap_rows import CellBest

    plt = pyplot()
    fig, ax = plt.subplots()
    best = [CellBest(c, a, 1.0, 1.0, 1, 1.0, 1, 1.0, "si") for c in (0.3, 0.4) for a in (0.6, 0.8)]
    from dsi_online.studies.heatmap_rows import panel_grid

    _span_grid(ax, panel_grid(best, "dsi_over_si"))
    assert ax.get_xlim() == pytest.approx((0.25, 0.45)) and ax.get_ylim() == pytest.approx(
        (0.5, 0.9)
    )
    plt.close(fig)


# --- help and conventions --------------------------------------------------------------------


def test_no_arguments_prints_help_without_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    captured = capsys.readouterr()
    assert "Usage" in captured.out and "error" not in captured.err


def test_version_and_short_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert re.fullmatch(r"dsi-online \d+\.\d+\.\d+\n", capsys.readouterr().out)
    assert main(["run", "-h"]) == 0
    assert "Usage" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command",
    [
        ["run"],
        ["sweep"],
        ["heatmap"],
        ["table"],
        ["bench"],
        ["profiles"],
        ["measure", "latency"],
        ["measure", "acceptance"],
        ["validate"],
    ],
)
def test_help_panels_choices_flags_and_defaults(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from typer.core import TyperOption

    from dsi_online.cli.commands import command as root

    monkeypatch.setenv("COLUMNS", "200")
    assert main([*command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "<bool>" not in text
    if command[0] != "profiles":
        assert "Output" in text and ("Scenario" in text or "Execution" in text)
    cmd = root()
    for name in command:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    for param in cmd.params:
        if not isinstance(param, TyperOption) or param.required or param.is_flag:
            continue
        shown = param.default is not None and param.show_default is not False
        assert shown or re.search("default:|Required", param.help or ""), param.name
    if command == ["run"]:
        assert "wall|virtual" in text and "async|units" in text


def test_resume_takes_settings_from_the_folder_and_names_a_difference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "h"
    assert main([*SMALL_HEATMAP, "--out", str(out)]) == 0
    (out / "heatmap.csv").unlink()  # as if interrupted after the journal
    capsys.readouterr()
    assert main(["heatmap", "--resume", "--out", str(out), "--no-png", "--workers", "1"]) == 0
    assert "12 (c, a, k) cells" in capsys.readouterr().err
    line = one_error(capsys, ["heatmap", "--resume", "--out", str(out), "-S", "999"])
    assert "--tokens" in line and "999" in line and "20" in line
    sweep = tmp_path / "s"
    args = ["sweep", "--vary", "servers=1:2", "-S", "10", "-r", "2", "--no-png"]
    assert main([*args, "--out", str(sweep)]) == 0
    assert main(["sweep", "--resume", "--out", str(sweep), "--no-png", "-r", "2"]) == 0
    capsys.readouterr()
    line = one_error(capsys, ["sweep", "--resume", "--out", str(sweep), "--vary", "servers=1:3"])
    assert "--vary" in line


def test_a_ray_cluster_that_dies_mid_run_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stand-in for ray whose cluster fails at the first result: one `error:` line, exit 2,
    the folder kept for --resume."""
    import types

    class RayError(Exception):
        pass

    class RayTaskError(RayError):
        pass

    class Remote:
        def remote(self, *args: object) -> object:
            return object()

    fake = types.SimpleNamespace(
        is_initialized=lambda: False,
        init=lambda **kwargs: None,
        shutdown=lambda: None,
        remote=lambda func: Remote(),
        put=lambda value: value,
        wait=lambda pending, num_returns: (pending[:1], pending[1:]),
        get=lambda ref: (_ for _ in ()).throw(RayError("node died\nlog line 2")),
        exceptions=types.SimpleNamespace(RayError=RayError, RayTaskError=RayTaskError),
    )
    monkeypatch.setitem(sys.modules, "ray", fake)
    out = tmp_path / "h"
    line = one_error(capsys, [*SMALL_HEATMAP, "--backend", "ray", "--out", str(out)])
    assert "Ray cluster failed during the run: node died" in line
    assert (out / "run.json").is_file()
